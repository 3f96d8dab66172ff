"""`triton-bundle tune`: search the repository options Triton offers against the real local server.

Each trial generates the model repository with one combination of the tensor model's dynamic-batching
queue delay, preferred batch sizes, instance count and onnxruntime threads per instance, starts a local
Triton on free ports, and runs one bounded Locust load test at the spec's load under the spec's SLOs.
The winner is the passing trial with the highest throughput (ties: lower p95). Like Model Analyzer's
brute-force search, in one command and measured, not guessed. Trials are bounded by `max_trials`; the
grid must fit in it.

Writes tune.json, tune.md and spec_snippet.yaml (the winning `repository:` options, to paste into the
spec) under <workdir>/tune, and a manifest record. Repositories are generated from a private copy of the
manifest, so the spec's own `repository` record is left as it was.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from triton_bundle.atomic import write_text_atomic
from triton_bundle.errors import BundleError
from triton_bundle.loadtest.record import TuneDetails, TuneRecord
from triton_bundle.loadtest.runner import LoadtestResult, run_loadtest
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, build_settings, prepare_run_dir, target_model
from triton_bundle.loadtest.workload import workload_for
from triton_bundle.manifest import Manifest
from triton_bundle.spec import ModelSpec, SLOSpec

STAGE = "tune"


class TuneUsageError(BundleError, ValueError):
    """A search space the tuner cannot run (empty, or more trials than allowed)."""


class TunedOptions(BaseModel):
    """One point of the search: the `repository:` options a trial was served with."""

    max_queue_delay_us: int = Field(ge=0)
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    instances: int = Field(1, ge=1)
    intra_op_threads: int = Field(0, ge=0, description="0: the cores split among the instances")

    @property
    def label(self) -> str:
        preferred = ",".join(map(str, self.preferred_batch_sizes)) or "-"
        return (
            f"delay {self.max_queue_delay_us}us pref {preferred} x{self.instances} "
            f"threads {self.intra_op_threads or 'auto'}"
        )

    def snippet(self) -> str:
        """The spec's `repository:` section with these options (YAML)."""
        return yaml.safe_dump({"repository": self.model_dump()}, sort_keys=False)


class TuneSpace(BaseModel):
    """The grid searched; every combination is one trial."""

    max_queue_delay_us: list[int] = Field(default_factory=lambda: [0, 500, 2000])
    preferred_batch_sizes: list[list[int]] = Field(default_factory=lambda: [[]])
    instances: list[int] = Field(default_factory=lambda: [1, 2])
    intra_op_threads: list[int] = Field(default_factory=lambda: [0])

    def candidates(self, max_batch_size: int) -> list[TunedOptions]:
        grid = itertools.product(
            self.max_queue_delay_us, self.preferred_batch_sizes, self.instances, self.intra_op_threads
        )
        out = []
        for delay, preferred, instances, threads in grid:
            if any(size > max_batch_size for size in preferred):
                raise TuneUsageError(
                    f"preferred batch sizes {preferred} exceed the spec's max_batch_size {max_batch_size}"
                )
            out.append(TunedOptions(max_queue_delay_us=delay, preferred_batch_sizes=sorted(preferred),
                                    instances=instances, intra_op_threads=threads))  # fmt: skip
        return out


class TuneTrial(BaseModel):
    options: TunedOptions
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float | None
    queue_ms: float | None = Field(None, description="Triton queue time per request, all steps")
    compute_ms: float | None = Field(None, description="Triton compute time per request, all steps")
    run_dir: Path


class TuneResult(BaseModel):
    model: str
    users: int
    duration_s: float
    slo: SLOSpec
    trials: list[TuneTrial]
    best: TunedOptions | None = Field(description="the passing trial with the highest throughput")
    note: str


def pick_best(trials: list[TuneTrial]) -> TuneTrial | None:
    """Highest throughput among the trials that met every SLO; ties go to the lower p95."""
    passing = [t for t in trials if t.passed]
    return max(passing, key=lambda t: (t.rps, -(t.p95_ms or 0.0)), default=None)


def trial_of(options: TunedOptions, result: LoadtestResult) -> TuneTrial:
    c, server = result.client, result.server
    return TuneTrial(
        options=options,
        passed=result.passed,
        reasons=[check.explain() for check in result.gate.failed],
        rps=c.rps,
        p50_ms=c.latency.p50_ms,
        p95_ms=c.latency.p95_ms,
        p99_ms=c.latency.p99_ms,
        error_rate=c.error_rate,
        queue_ms=server.queue_ms,
        compute_ms=server.compute_ms,
        run_dir=result.run_dir,
    )


def _private_workdir(spec: ModelSpec, workdir: Path, out_dir: Path) -> Path:
    """A copy of the manifest for the trials' repositories: the spec's own records stay untouched."""
    private = out_dir / "work"
    private.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(workdir, spec.name)
    Manifest.model_validate(manifest.model_dump()).save(private)
    return private


def run_trial(
    spec: ModelSpec, private: Path, options: TunedOptions, overrides: Overrides, slo: SLOSpec, run_dir: Path
) -> TuneTrial:
    """Generate the repository with `options`, serve it locally, load-test it once."""
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    repository = generate_repository(
        spec, private, out_dir=run_dir / "repository", target="local", force=True, **options.model_dump()
    )
    config = ServerConfig(
        repository=repository,
        log_file=run_dir / "tritonserver.log",
        ready_timeout_s=spec.serving.ready_timeout_s,
    )
    with LocalTriton(config) as server:
        protocol = overrides.protocol or spec.loadtest.protocol
        endpoint = Endpoint(
            protocol=protocol,
            url=server.grpc_url if protocol == "grpc" else server.http_url,
            metrics_url=server.metrics_url,
            http_url=server.http_url,
        )
        settings = build_settings(spec, overrides, run_dir / "loadtest", endpoint)
        workload = workload_for(spec, seed=overrides.seed or 0)
        result = run_loadtest(settings, workload, slo, run_dir / "loadtest")
    return trial_of(options, result)


def tune_stage(
    spec: ModelSpec,
    workdir: Path,
    space: TuneSpace,
    *,
    max_trials: int = 12,
    overrides: Overrides | None = None,
    slo: SLOSpec | None = None,
    out: Path | None = None,
    force: bool = False,
) -> TuneResult:
    """Every combination of `space`, one trial each, at the spec's load (or `overrides`)."""
    candidates = space.candidates(spec.repository.max_batch_size)
    if not candidates:
        raise TuneUsageError("the search space is empty: give at least one value per option")
    if len(candidates) > max_trials:
        raise TuneUsageError(
            f"the grid has {len(candidates)} combinations but --max-trials is {max_trials}: "
            "give fewer values per option or raise --max-trials"
        )
    overrides = (overrides or Overrides()).model_copy(update={"shape": "constant", "think_time_s": 0.0})
    slo = slo or spec.loadtest.slo
    out_dir = prepare_run_dir(out or workdir / STAGE, force)
    private = _private_workdir(spec, workdir, out_dir)
    trials = []
    for number, options in enumerate(candidates, start=1):
        run_dir = out_dir / f"trial-{number:02d}"
        trials.append(run_trial(spec, private, options, overrides, slo, run_dir))
    best = pick_best(trials)
    settings = build_settings(spec, overrides, out_dir, None)
    note = (
        f"best: {best.options.label} at {best.rps:.1f} req/s"
        if best is not None
        else "no trial met the SLOs: relax them, lower the load, or widen the search"
    )
    result = TuneResult(
        model=target_model(spec, overrides),
        users=settings.shape.users,
        duration_s=settings.shape.duration_s,
        slo=slo,
        trials=trials,
        best=None if best is None else best.options,
        note=note,
    )
    _record(workdir, spec, result, write_tune_report(result, out_dir))
    return result


def _record(workdir: Path, spec: ModelSpec, result: TuneResult, artifacts: dict[str, Path]) -> None:
    manifest = Manifest.load(workdir, spec.name)
    best = pick_best(result.trials)
    manifest.record(
        TuneRecord(
            artifacts={k: v.resolve() for k, v in artifacts.items()},
            metrics={"best_rps": best.rps} if best is not None else {},
            details=TuneDetails(
                trials=len(result.trials), best=result.best.model_dump() if result.best else None
            ),
            passed=best is not None,
        )
    )
    manifest.save(workdir)


def write_tune_report(result: TuneResult, out_dir: Path) -> dict[str, Path]:
    ms = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    lines = [
        f"# Tuning `{result.model}`: {result.note}",
        "",
        f"{len(result.trials)} trials, {result.users} users for {result.duration_s:g} s each, under the "
        "spec's SLOs. Queue / compute: Triton's statistics per request, summed over the ensemble's steps.",
        "",
        "| trial | options | result | req/s | p50 ms | p95 ms | p99 ms | queue ms | compute ms | why |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for number, t in enumerate(result.trials, start=1):
        lines.append(
            f"| {number} | {t.options.label} | {'pass' if t.passed else 'FAIL'} | {t.rps:.1f} | "
            f"{ms(t.p50_ms)} | {ms(t.p95_ms)} | {ms(t.p99_ms)} | {ms(t.queue_ms)} | {ms(t.compute_ms)} | "
            f"{'; '.join(t.reasons)} |"
        )
    snippet = result.best.snippet() if result.best else "# no trial met the SLOs\n"
    lines += ["", "Winning options for the spec:", "", "```yaml", snippet.rstrip(), "```", ""]
    return {
        "tune_json": write_text_atomic(out_dir / "tune.json", result.model_dump_json(indent=2)),
        "tune_md": write_text_atomic(out_dir / "tune.md", "\n".join(lines)),
        "spec_snippet": write_text_atomic(out_dir / "spec_snippet.yaml", snippet),
    }
