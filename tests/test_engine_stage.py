"""The engine stage's bookkeeping: which ONNX each variant comes from, what a CPU host says, what is
recorded. Small graphs only; the real model is built in test_engine_aot.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from triton_bundle.engine.builder import container_command
from triton_bundle.engine.errors import SourceOnnxError, TensorRTUnavailableError
from triton_bundle.engine.stage import available_variants, build_variant, relocate, source_onnx
from triton_bundle.manifest import Manifest, MissingStageError, StageRecord
from triton_bundle.spec import ModelSpec

HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _tiny_onnx(path: Path, op: str = "Relu") -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    node = helper.make_node(op, ["x"], ["y"], name=f"{op.lower()}_node")
    model = helper.make_model(
        helper.make_graph([node], "tiny", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def spec(tmp_path: Path) -> ModelSpec:
    (tmp_path / "eval.jsonl").write_text('{"text": "hi", "label": "a"}\n', encoding="utf-8")
    spec = ModelSpec.model_validate(
        {
            "name": "tiny",
            "task": "tensor",
            "source": {"path": "ckpt"},
            "data": {"eval": "eval.jsonl"},
            "inputs": [{"name": "x", "shape": ["batch", 16]}],
            "engine": {"triton_image_tag": "25.10"},
        }
    )
    spec.base_dir = tmp_path
    return spec


def _workdir(tmp_path: Path, **precision: Path) -> Path:
    workdir = tmp_path / "artifacts"
    manifest = Manifest(model="tiny")
    manifest.record(
        StageRecord(stage="export", artifacts={"onnx": _tiny_onnx(workdir / "onnx" / "model.onnx")})
    )
    if precision:
        manifest.record(StageRecord(stage="precision", artifacts=precision))
    manifest.save(workdir)
    return workdir


def test_each_variant_reads_the_onnx_its_stage_recorded(spec: ModelSpec, tmp_path: Path) -> None:
    fp16 = _tiny_onnx(tmp_path / "p" / "fp16.onnx")
    workdir = _workdir(tmp_path, fp16=fp16)
    manifest = Manifest.load(workdir, "tiny")
    assert source_onnx(spec, manifest, workdir, "fp32") == workdir / "onnx" / "model.onnx"
    assert source_onnx(spec, manifest, workdir, "fp16") == fp16
    with pytest.raises(SourceOnnxError, match=r"recorded no 'int8' ONNX.*triton-bundle precision"):
        source_onnx(spec, manifest, workdir, "int8")
    ready, skipped = available_variants(spec, workdir)
    assert ready == ["fp32", "fp16"] and set(skipped) == {"int8"}


def test_a_variant_that_failed_its_accuracy_gate_gets_no_engine(spec: ModelSpec, tmp_path: Path) -> None:
    workdir = tmp_path / "artifacts"
    int8_dir = workdir / "precision" / "int8"
    _tiny_onnx(int8_dir / "model.onnx")
    fp16 = _tiny_onnx(tmp_path / "p" / "fp16.onnx")
    manifest = Manifest(model="tiny")
    manifest.record(
        StageRecord(
            stage="precision",
            artifacts={"int8": int8_dir, "fp16": fp16},  # a directory holding model.onnx is accepted
            details={"gates": {"int8": {"passed": False}, "fp16": {"passed": True}}},
        )
    )
    manifest.save(workdir)
    manifest = Manifest.load(workdir, "tiny")
    with pytest.raises(SourceOnnxError, match=r"int8 ONNX of 'tiny' failed its accuracy gate"):
        source_onnx(spec, manifest, workdir, "int8")
    assert source_onnx(spec, manifest, workdir, "fp16") == fp16
    manifest.stages["precision"].details["gates"]["int8"]["passed"] = True
    assert source_onnx(spec, manifest, workdir, "int8") == (int8_dir / "model.onnx").resolve()


def test_a_missing_precision_stage_says_what_to_run(spec: ModelSpec, tmp_path: Path) -> None:
    workdir = _workdir(tmp_path)
    with pytest.raises(MissingStageError, match=r"'precision' stage has not run.*triton-bundle precision"):
        source_onnx(spec, Manifest.load(workdir, "tiny"), workdir, "int8")


def test_artifacts_recorded_under_another_mount_point_are_found_under_the_workdir(tmp_path: Path) -> None:
    workdir = _workdir(tmp_path)
    # The manifest was written on the host; the container mounts the checkout elsewhere.
    recorded = Path("/home/someone/project/artifacts/onnx/model.onnx")
    assert relocate(recorded, workdir) == workdir / "onnx" / "model.onnx"
    assert relocate(Path("/elsewhere/onnx/missing.onnx"), workdir) is None


@pytest.mark.skipif(HAS_TENSORRT, reason="datacenter TensorRT is installed here")
def test_gpu_build_on_a_cpu_host_names_the_container_command(spec: ModelSpec, tmp_path: Path) -> None:
    workdir = _workdir(tmp_path)
    with pytest.raises(TensorRTUnavailableError) as caught:
        build_variant(spec, workdir, "fp32", spec_path="models/tiny.yaml")
    message = str(caught.value)
    assert "docker run --rm --gpus all" in message
    assert "nvcr.io/nvidia/tensorrt:25.10-py3" in message
    assert "build models/tiny.yaml --variant fp32 --workdir" in message
    assert "--aot-check" in message
    assert not (workdir / "engines" / "fp32").exists()
    assert "engine" not in Manifest.load(workdir, "tiny").stages


def test_container_command_mounts_the_checkout_at_the_same_path() -> None:
    command = container_command("examples/m/spec.yaml", "int8", "24.12")
    assert '-v "$PWD":"$PWD" -w "$PWD"' in command
    assert "nvcr.io/nvidia/tensorrt:24.12-py3" in command
    assert command.endswith("--variant int8'")


@pytest.mark.skipif(not HAS_RTX, reason="pip install -e '.[trt-rtx]'")
def test_aot_checks_of_two_variants_both_stay_recorded(spec: ModelSpec, tmp_path: Path) -> None:
    workdir = _workdir(tmp_path, fp16=_tiny_onnx(tmp_path / "p" / "fp16.onnx"))
    first = build_variant(spec, workdir, "fp32", aot=True)
    second = build_variant(spec, workdir, "fp16", aot=True, keep_plan=True)
    assert first.passed and second.passed
    record = Manifest.load(workdir, "tiny").stages["engine"]
    assert set(record.artifacts) == {"fp32_aot", "fp16_aot"}
    assert record.passed
    assert record.details["fp32_aot"]["profile"]["shapes"]["x"] == [[1, 16], [8, 16], [32, 16]]
    # Only with --keep-plan does the RTX plan stay, described as an RTX (not servable) engine.
    assert not (first.directory / "model.plan").exists()
    assert (second.directory / "model.plan").stat().st_size > 0
    assert '"builder": "tensorrt_rtx"' in (second.directory / "engine.json").read_text()


@pytest.mark.skipif(not HAS_RTX, reason="pip install -e '.[trt-rtx]'")
def test_cli_refusal_exits_2_and_names_each_refused_node(spec: ModelSpec, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "name: tiny\ntask: tensor\nsource: {path: ckpt}\ndata: {eval: eval.jsonl}\n"
        "inputs: [{name: x, shape: [batch, 16]}]\n",
        encoding="utf-8",
    )
    workdir = _workdir(tmp_path, int8=_tiny_onnx(tmp_path / "p" / "int8.onnx", op="MatMulInteger"))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "triton_bundle.engine", "build", str(spec_file)),
            *("--workdir", str(workdir), "--variant", "int8", "--aot-check"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "400"},  # rich wraps at 80 columns without a terminal
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "MatMulInteger x1" in done.stderr and "'matmulinteger_node'" in done.stderr
    record = Manifest.load(workdir, "tiny").stages["engine"]
    assert not record.passed
    assert record.details["int8_aot"]["unsupported_nodes"]


@pytest.mark.skipif(not HAS_RTX, reason="pip install -e '.[trt-rtx]'")
def test_spec_builder_options_reach_the_build_and_the_record(spec: ModelSpec, tmp_path: Path) -> None:
    spec.engine.builder_optimization_level = 5
    spec.engine.hardware_compatibility = "ampere_plus"
    spec.engine.version_compatible = True
    result = build_variant(spec, _workdir(tmp_path), "fp32", aot=True)
    assert result.passed, result.aot.error if result.aot else ""
    options = result.aot.build_options
    assert options["builder_optimization_level"] == 5
    assert options["hardware_compatibility"] == "ampere_plus"
    # Version-compatible plans embed datacenter TensorRT's lean runtime: not applicable ahead of time.
    assert options["version_compatible"] is False and "version_compatible" in options["not_applied"]
