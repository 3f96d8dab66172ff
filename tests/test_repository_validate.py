"""`repo validate` catches what would break in Triton, each case with its fix; the nvidia target's engines.

TensorRT engines cannot be built or run on this CPU-only machine, so the engine cases use engine
manifests (what the engine stage writes beside each plan) with a placeholder plan: the generator and the
validator read only the manifest, never the plan's bytes.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from typer.testing import CliRunner

from triton_bundle.engine.manifest import ENGINE_MANIFEST_NAME, EngineManifest, ProfileDims
from triton_bundle.manifest import Manifest, StageRecord, sha256_file
from triton_bundle.repository import contract
from triton_bundle.repository.cli import app
from triton_bundle.repository.generate import generate_repository
from triton_bundle.repository.layout import config_text, read_config
from triton_bundle.repository.sources import RepositoryError
from triton_bundle.repository.triton_images import tensorrt_for_image
from triton_bundle.repository.validate import Problem, validate_repository
from triton_bundle.spec import EngineSpec, ModelSpec

# Engines in these tests are recorded as built for the image the bundle pins today, so moving the pin
# (docker/set-release.sh) keeps them valid; the mismatch cases name an older image explicitly.
PIN = EngineSpec().triton_image_tag
PIN_TENSORRT = f"{tensorrt_for_image(PIN)}.1"

NAME = "minilm-intent"
TOKEN_INPUTS = [contract.INPUT_IDS, contract.ATTENTION_MASK, contract.TOKEN_TYPE_IDS]


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def _edit(repo: Path, model: str, change) -> None:
    path = repo / model / "config.pbtxt"
    config = read_config(path)
    change(config)
    path.write_text(config_text(config), encoding="utf-8")


@pytest.fixture
def local_repo(demo_repository: Path, tmp_path: Path) -> Path:
    """A private copy of the generated demo repository; the ONNX files are hard links (never edited)."""

    def place(src: str, dst: str) -> None:
        if src.endswith(".onnx"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    return Path(shutil.copytree(demo_repository, tmp_path / "repo", copy_function=place))


def _one(problems: list[Problem], text: str) -> Problem:
    matches = [p for p in problems if text in p.message]
    assert matches, f"no problem mentions {text!r}: {[p.message for p in problems]}"
    assert matches[0].fix
    return matches[0]


# --------------------------------------------------------------------------------------- local target


@pytest.mark.slow
def test_batch_dim_mismatch(local_repo: Path) -> None:
    _edit(local_repo, contract.tensor_model(NAME), lambda c: setattr(c, "max_batch_size", 0))
    problem = _one(validate_repository(local_repo), "batch dim mismatch")
    assert problem.model == contract.tensor_model(NAME)
    assert "max_batch_size" in problem.fix


@pytest.mark.slow
def test_wrong_dtype(local_repo: Path) -> None:
    def to_int32(config: mc.ModelConfig) -> None:
        config.input[0].data_type = mc.TYPE_INT32

    _edit(local_repo, contract.tensor_model(NAME), to_int32)
    problems = validate_repository(local_repo)
    graph = _one(problems, "is TYPE_INT32 in config.pbtxt but TYPE_INT64 in 1/model.onnx")
    assert graph.fix.startswith("set data_type: TYPE_INT64")
    _one(problems, "expects TYPE_INT32")  # the tokenizer still feeds it INT64 through the ensemble


@pytest.mark.slow
def test_ensemble_wired_to_a_missing_tensor(local_repo: Path) -> None:
    def miswire(config: mc.ModelConfig) -> None:
        config.ensemble_scheduling.step[1].input_map[contract.INPUT_IDS] = "input_idz"

    _edit(local_repo, NAME, miswire)
    problem = _one(validate_repository(local_repo), "wired to 'input_idz'")
    assert problem.model == NAME and contract.INPUT_IDS in problem.fix


@pytest.mark.slow
def test_unparsable_config_and_missing_step_model(local_repo: Path) -> None:
    (local_repo / contract.postprocess_model(NAME) / "config.pbtxt").write_text(
        "name: [oops", encoding="utf-8"
    )
    problems = validate_repository(local_repo)
    _one(problems, "does not parse")
    _one(problems, f"step model '{contract.postprocess_model(NAME)}' is not in the repository")


@pytest.mark.slow
def test_validate_cli_exits_1_and_lists_problems(local_repo: Path) -> None:
    runner = CliRunner()
    clean = runner.invoke(app, ["validate", str(local_repo)], env={"COLUMNS": "200"})
    assert clean.exit_code == 0, clean.output
    _edit(local_repo, contract.tensor_model(NAME), lambda c: setattr(c, "max_batch_size", 0))
    broken = runner.invoke(app, ["validate", str(local_repo)], env={"COLUMNS": "200"})
    assert broken.exit_code == 1
    assert "problem(s)" in broken.output and contract.tensor_model(NAME) in broken.output


# -------------------------------------------------------------------------------------- nvidia target


def _engine_dir(root: Path, onnx: Path, **overrides) -> Path:
    profile = {n: ([1, 1], [8, 32], [32, 128]) for n in TOKEN_INPUTS}
    fields = {
        "builder": "tensorrt",
        "tensorrt_version": PIN_TENSORRT,
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "precision": "fp32",
        "profiles": [ProfileDims(shapes=profile)],
        "source_onnx": str(onnx),
        "source_onnx_sha256": sha256_file(onnx),
        "triton_image_tag": PIN,
        "input_types": dict.fromkeys(TOKEN_INPUTS, "INT64"),
    } | overrides
    root.mkdir(parents=True)
    (root / "model.plan").write_bytes(b"placeholder plan: engines are built on a GPU host")
    (root / ENGINE_MANIFEST_NAME).write_text(
        EngineManifest(**fields).model_dump_json(indent=2), encoding="utf-8"
    )
    return root


def _nvidia_workdir(demo_workdir: Path, tmp_path: Path, engines: Path) -> Path:
    workdir = tmp_path / "work"
    workdir.mkdir(parents=True)
    manifest = Manifest.load(demo_workdir, NAME)
    manifest.stages.pop("repository", None)
    manifest.record(StageRecord(stage="engine", artifacts={"fp32": engines}))
    manifest.save(workdir)
    return workdir


def _onnx(demo_workdir: Path) -> Path:
    return Manifest.load(demo_workdir, NAME).stages["export"].artifact("onnx")


@pytest.mark.slow
def test_nvidia_repository_serves_engines_and_checks_the_image(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    engines = _engine_dir(tmp_path / "engines", _onnx(demo_workdir))
    workdir = _nvidia_workdir(demo_workdir, tmp_path, engines)
    repo = generate_repository(demo_spec, workdir, out_dir=tmp_path / "repo", target="nvidia")
    tensor_dir = repo / contract.tensor_model(NAME)
    config = read_config(tensor_dir / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    assert not config.dynamic_batching.preferred_batch_size, "one profile: no preferred sizes"
    assert (tensor_dir / "1" / "model.plan").is_file() and (tensor_dir / "1" / "model.engine.json").is_file()
    assert text_format.MessageToString(config) == (tensor_dir / "config.pbtxt").read_text(encoding="utf-8")
    assert _errors(validate_repository(repo, triton_image_tag=PIN)) == []

    # Engine built for another TensorRT version than the target image ships.
    problem = _one(
        validate_repository(repo, triton_image_tag="24.08"), "but Triton 24.08 ships TensorRT 10.3.0"
    )
    assert "nvcr.io/nvidia/tensorrt:24.08-py3" in problem.fix and PIN in problem.fix

    # An engine whose input dtype differs from the config.
    meta = tensor_dir / "1" / "model.engine.json"
    engine = EngineManifest.read(meta)
    engine.input_types[contract.INPUT_IDS] = "INT32"
    meta.write_text(engine.model_dump_json(), encoding="utf-8")
    _one(
        validate_repository(repo, triton_image_tag=PIN),
        "is TYPE_INT64 in config.pbtxt but TYPE_INT32 in the engine",
    )


@pytest.mark.slow
def test_engine_for_another_tensorrt_is_refused_at_generation(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    engines = _engine_dir(
        tmp_path / "engines", _onnx(demo_workdir), tensorrt_version="10.3.0.26", triton_image_tag="24.08"
    )
    workdir = _nvidia_workdir(demo_workdir, tmp_path, engines)
    with pytest.raises(
        RepositoryError,
        match=rf"TensorRT 10\.3\.0\.26, but Triton {re.escape(PIN)} ships TensorRT {re.escape(tensorrt_for_image(PIN))}",
    ):
        generate_repository(demo_spec, workdir, out_dir=tmp_path / "repo", target="nvidia")
    assert not (tmp_path / "repo").exists()


@pytest.mark.slow
def test_profile_max_below_max_batch_size(demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path) -> None:
    small = ProfileDims(shapes={n: ([1, 1], [8, 32], [16, 128]) for n in TOKEN_INPUTS})
    engines = _engine_dir(tmp_path / "engines", _onnx(demo_workdir), profiles=[small])
    workdir = _nvidia_workdir(demo_workdir, tmp_path, engines)
    with pytest.raises(RepositoryError, match="largest profile batch is 16, below max_batch_size 32"):
        generate_repository(demo_spec, workdir, out_dir=tmp_path / "repo", target="nvidia")
    # The same engine in a repository generated for max_batch_size 16, then raised by hand to 32.
    repo = generate_repository(
        demo_spec, workdir, out_dir=tmp_path / "repo", target="nvidia", max_batch_size=16
    )
    for model in repo.iterdir():
        if model.is_dir():
            _edit(repo, model.name, lambda c: setattr(c, "max_batch_size", 32))
    _one(validate_repository(repo), "engine profile max batch 16 is below max_batch_size 32")


@pytest.mark.slow
def test_profile_max_below_tokenizer_max_length(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    short = ProfileDims(shapes={n: ([1, 1], [8, 32], [32, 64]) for n in TOKEN_INPUTS})
    engines = _engine_dir(tmp_path / "engines", _onnx(demo_workdir), profiles=[short])
    workdir = _nvidia_workdir(demo_workdir, tmp_path, engines)
    with pytest.raises(RepositoryError, match="below the tokenizer's max length 128"):
        generate_repository(demo_spec, workdir, out_dir=tmp_path / "repo", target="nvidia")
    # Generated against a full-length engine, then the engine swapped for the short one.
    full = _engine_dir(tmp_path / "full", _onnx(demo_workdir))
    repo = generate_repository(
        demo_spec,
        _nvidia_workdir(demo_workdir, tmp_path / "w2", full),
        out_dir=tmp_path / "repo",
        target="nvidia",
    )
    shutil.copy(
        engines / ENGINE_MANIFEST_NAME, repo / contract.tensor_model(NAME) / "1" / "model.engine.json"
    )
    problem = _one(validate_repository(repo), "profile max below the tokenizer's max length")
    assert "shapes.sequence.max" in problem.fix


@pytest.mark.slow
def test_engines_per_compute_capability_and_profiles(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    full = ProfileDims(shapes={n: ([1, 16], [8, 64], [32, 128]) for n in TOKEN_INPUTS})
    low = ProfileDims(shapes={n: ([1, 16], [4, 32], [8, 128]) for n in TOKEN_INPUTS})
    onnx = _onnx(demo_workdir)
    root = tmp_path / "engines"
    _engine_dir(root / "sm80", onnx, compute_capability="8.0", gpu_name="NVIDIA A100", profiles=[full, full])
    _engine_dir(root / "sm90", onnx, compute_capability="9.0", profiles=[full, full])
    workdir = _nvidia_workdir(demo_workdir, tmp_path, root)
    repo = generate_repository(
        demo_spec, workdir, out_dir=tmp_path / "repo", target="nvidia", cuda_graphs=True
    )
    config = read_config(repo / contract.tensor_model(NAME) / "config.pbtxt")
    assert dict(config.cc_model_filenames) == {"8.0": "model_sm80.plan", "9.0": "model_sm90.plan"}
    assert [list(g.profile) for g in config.instance_group] == [["0"], ["1"]]
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.optimization.cuda.graphs and len(config.optimization.cuda.graph_spec) > 0
    assert all(s.input[contract.INPUT_IDS].dim[0] >= 16 for s in config.optimization.cuda.graph_spec)
    tokenizer = read_config(repo / contract.tokenizer_model(NAME) / "config.pbtxt")
    assert tokenizer.parameters["min_length"].string_value == "16", "never shorter than the profile minimum"
    assert _errors(validate_repository(repo, triton_image_tag=PIN)) == []

    # Profiles that split the batch range are not bound to instance groups: the backend picks per batch.
    split = tmp_path / "split"
    _engine_dir(split, onnx, profiles=[low, full])
    repo2 = generate_repository(
        demo_spec,
        _nvidia_workdir(demo_workdir, tmp_path / "w2", split),
        out_dir=tmp_path / "repo2",
        target="nvidia",
    )
    config2 = read_config(repo2 / contract.tensor_model(NAME) / "config.pbtxt")
    assert [list(g.profile) for g in config2.instance_group] == [[]]
    assert list(config2.dynamic_batching.preferred_batch_size) == [4, 8]


@pytest.mark.slow
def test_ahead_of_time_rtx_engine_is_flagged(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    engines = _engine_dir(
        tmp_path / "engines", _onnx(demo_workdir), builder="tensorrt_rtx", compute_capability=None
    )
    workdir = _nvidia_workdir(demo_workdir, tmp_path, engines)
    with pytest.raises(RepositoryError, match="tensorrt_rtx"):
        generate_repository(demo_spec, workdir, out_dir=tmp_path / "repo", target="nvidia")


def test_missing_repository_is_one_problem(tmp_path: Path) -> None:
    problems = validate_repository(tmp_path / "nope")
    assert len(problems) == 1 and "does not exist" in problems[0].message
