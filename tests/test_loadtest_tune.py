"""`triton-bundle tune`: a tiny grid against the real local Triton, for a classifier and an embedder.

Speed is not asserted (the box is shared): only that every combination was served with its options,
measured under the SLOs, and that the winner is the best passing trial, written back as a spec snippet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from triton_bundle.loadtest.stage import Overrides
from triton_bundle.loadtest.tune import (
    TunedOptions,
    TuneSpace,
    TuneTrial,
    TuneUsageError,
    pick_best,
    tune_stage,
)
from triton_bundle.loadtest.tune_cli import tune_command
from triton_bundle.manifest import Manifest
from triton_bundle.repository.layout import CONFIG_FILE, read_config
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.spec import ModelSpec, RepositorySpec, SLOSpec

LOOSE = SLOSpec(p95_ms=30_000, max_error_rate=0.0)


def _trial(rps: float, p95: float, passed: bool) -> TuneTrial:
    options = TunedOptions(max_queue_delay_us=int(rps))
    return TuneTrial(options=options, passed=passed, rps=rps, p50_ms=1, p95_ms=p95, p99_ms=p95,
                     error_rate=0.0, run_dir=Path("."))  # fmt: skip


def test_grid_and_winner_rules():
    space = TuneSpace(max_queue_delay_us=[0, 500], preferred_batch_sizes=[[], [8, 4]], instances=[1, 2])
    candidates = space.candidates(max_batch_size=8)
    assert len(candidates) == 8 and len({c.model_dump_json() for c in candidates}) == 8
    assert [4, 8] in [c.preferred_batch_sizes for c in candidates]  # sorted, as Triton lists them
    with pytest.raises(TuneUsageError, match="exceed the spec's max_batch_size 4"):
        space.candidates(max_batch_size=4)
    trials = [_trial(300, 40, False), _trial(200, 30, True), _trial(200, 20, True), _trial(100, 5, True)]
    assert pick_best(trials) is trials[2]  # fastest passing; a tie goes to the lower p95
    assert pick_best([_trial(300, 40, False)]) is None
    with pytest.raises(ValueError, match="exceed max_batch_size 8"):
        RepositoryOptions(max_batch_size=8, preferred_batch_sizes=[16])


def test_cli_refuses_a_grid_larger_than_max_trials(tmp_path: Path):
    app = typer.Typer()
    app.command()(tune_command)
    spec = Path(__file__).parents[1] / "examples" / "minilm-intent" / "spec.yaml"
    runner = CliRunner()
    result = runner.invoke(app, [str(spec), "--delays", "0,100,200", "--instances", "1,2", "--max-trials", "4",
                                 "-w", str(tmp_path)])  # fmt: skip
    assert result.exit_code != 0 and "6 combinations" in str(result.exception)
    result = runner.invoke(app, [str(spec), "--preferred", "none;0,4", "-w", str(tmp_path)])
    assert result.exit_code != 0 and "integers >= 1" in str(result.exception)


def _served_batching(trial: TuneTrial, model: str):
    config = read_config(trial.run_dir.parent / "repository" / model / CONFIG_FILE)
    return config.dynamic_batching, sum(g.count for g in config.instance_group)


def _tiny(root: Path, arch: str, task: str) -> tuple[ModelSpec, Path]:
    """A 2-layer model made from a config (MiniLM's vocabulary), exported with parity, in a workdir."""
    from fixtures.export_builders import make_spec, save_text_checkpoint, write_texts

    from triton_bundle.export.stage import export_model

    checkpoint = save_text_checkpoint(root / f"{arch}-checkpoint", arch, task)
    spec = make_spec(
        root, name=f"tiny-{arch}", task=task, source={"path": str(checkpoint)},
        data={"eval": str(write_texts(root / "eval.jsonl", count=40))},
    )  # fmt: skip
    export_model(spec, root / "work")
    return spec, root / "work"


@pytest.mark.slow
def test_tune_classifier_serves_each_option_and_writes_the_winner_back(tmp_path: Path):
    spec, workdir = _tiny(tmp_path, "bert", "text-classification")
    before = Manifest.load(workdir, spec.name).stages.get("repository")
    space = TuneSpace(max_queue_delay_us=[0, 1000], preferred_batch_sizes=[[4]], instances=[1])
    result = tune_stage(
        spec, workdir, space, overrides=Overrides(users=2, duration_s=2, max_requests=400), slo=LOOSE
    )
    assert len(result.trials) == 2 and all(t.rps > 0 and t.passed for t in result.trials)
    for trial, delay in zip(result.trials, (0, 1000), strict=True):
        batching, instances = _served_batching(trial, f"{spec.name}_model")
        assert (batching.max_queue_delay_microseconds, list(batching.preferred_batch_size)) == (delay, [4])
        assert instances == 1 and trial.queue_ms is not None and trial.compute_ms is not None
    best = pick_best(result.trials)
    assert best is not None and result.best == best.options and best.rps == max(t.rps for t in result.trials)

    out = workdir / "tune"
    snippet = yaml.safe_load((out / "spec_snippet.yaml").read_text())
    spec_repository = RepositorySpec.model_validate({**snippet["repository"]})
    assert spec_repository.max_queue_delay_us == best.options.max_queue_delay_us
    tuned = spec.model_copy(update={"repository": spec_repository})
    assert RepositoryOptions.from_spec(tuned).preferred_batch_sizes == [4]
    assert json.loads((out / "tune.json").read_text())["best"] == best.options.model_dump()
    assert "| 2 |" in (out / "tune.md").read_text()
    manifest = Manifest.load(workdir, spec.name)
    assert manifest.require("tune", "triton-bundle tune").passed
    assert manifest.stages.get("repository") == before  # the trials' repositories are not recorded


@pytest.mark.slow
def test_tune_embedding_model_with_two_instances(tmp_path: Path):
    spec, workdir = _tiny(tmp_path, "distilbert", "feature-extraction")
    space = TuneSpace(max_queue_delay_us=[500], instances=[2], intra_op_threads=[1])
    result = tune_stage(
        spec, workdir, space, overrides=Overrides(users=2, duration_s=2, max_requests=300), slo=LOOSE
    )
    (trial,) = result.trials
    batching, instances = _served_batching(trial, f"{spec.name}_model")
    assert batching.max_queue_delay_microseconds == 500 and instances == 2
    config = read_config(trial.run_dir.parent / "repository" / f"{spec.name}_model" / CONFIG_FILE)
    assert config.parameters["intra_op_threads"].string_value == "1"
    assert trial.passed and result.best == trial.options and result.model == spec.name
    impossible = SLOSpec(min_rps=1e9)
    failed = tune_stage(spec, workdir, space, overrides=Overrides(users=1, duration_s=1, max_requests=50),
                        slo=impossible, force=True)  # fmt: skip
    assert failed.best is None and "no trial met the SLOs" in failed.note
    assert (workdir / "tune" / "spec_snippet.yaml").read_text().startswith("# no trial")
    assert Manifest.load(workdir, spec.name).require("tune", "tune").passed is False
