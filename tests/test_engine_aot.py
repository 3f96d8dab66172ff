"""Every TensorRT-bound variant of the fine-tuned demo model parses and builds ahead of time with
TensorRT for RTX (no GPU needed), and a graph TensorRT cannot import is refused node by node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from engine_models import demo_variants, engine_workdir, int8_dynamic_onnx

from triton_bundle.data import load_texts
from triton_bundle.engine.aot_check import AotCheckResult
from triton_bundle.engine.stage import VARIANTS, build_variant
from triton_bundle.manifest import Manifest, sha256_file

pytestmark = pytest.mark.slow
pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX: pip install -e '.[trt-rtx]'")

ROOT = Path(__file__).resolve().parents[1]
PRECISION_OF = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


@pytest.fixture(scope="module")
def variants(demo_spec, demo_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    texts = load_texts(demo_spec.resolve(demo_spec.data.train), demo_spec.data.text_field, None).texts
    return demo_variants(demo_workdir, texts, tmp_path_factory.getbasetemp() / "engine-models")


@pytest.fixture(scope="module")
def workdir(demo_workdir: Path, variants: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return engine_workdir(demo_workdir, variants, tmp_path_factory.mktemp("engine-aot"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tensorrt_variant_parses_and_builds_ahead_of_time(
    demo_spec, workdir: Path, variants: dict[str, Path], variant: str
) -> None:
    result = build_variant(demo_spec, workdir, variant, aot=True)
    assert result.passed, result.aot.error if result.aot else "no result"
    report = AotCheckResult.model_validate_json((result.directory / "aot_check.json").read_text())
    assert report.passed and report.unsupported_nodes == []
    assert report.source_onnx_sha256 == sha256_file(variants[variant])
    assert report.plan_bytes and report.plan_bytes > 0
    assert report.build_options["strongly_typed"] is True
    # Most matrix multiplies run in the variant's own precision (the graph carries it: strongly typed).
    compute = report.layer_precisions.compute_layers
    assert max(compute, key=compute.__getitem__) == PRECISION_OF[variant], compute
    # The profile is the spec's: batch x sequence min / opt / max for every input.
    batch, sequence = demo_spec.shapes.batch, demo_spec.shapes.sequence
    for name in ("input_ids", "attention_mask"):
        assert report.profiles[0].shapes[name] == (
            [batch.min, sequence.min],
            [batch.opt, sequence.opt],
            [batch.max, sequence.max],
        )
    record = Manifest.load(workdir, demo_spec.name).stages["engine"]
    assert record.artifact(f"{variant}_aot") == result.directory.resolve()
    assert variant not in record.artifacts  # an RTX plan is never recorded as the servable engine


def test_cli_profiles_from_eval_data_move_opt_to_real_token_lengths(demo_spec, workdir: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "triton_bundle.engine", "build"),
            str(ROOT / "examples/minilm-intent/spec.yaml"),
            *("--workdir", str(workdir), "--variant", "fp16", "--aot-check", "--profiles", "eval-data"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    details = Manifest.load(workdir, demo_spec.name).stages["engine"].details["fp16_aot"]
    assert details["profile_source"] == "eval-data"
    stats = details["token_lengths"]
    assert stats["count"] == len(load_texts(demo_spec.resolve(demo_spec.data.eval), "text", None))
    opt_sequence = details["profile"]["shapes"]["input_ids"][1][1]
    assert stats["p50"] <= opt_sequence < stats["p50"] + 8
    assert "TensorRT-RTX" in done.stdout


def test_onnxruntime_dynamic_int8_is_refused_node_by_node(
    demo_spec, demo_workdir: Path, variants: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    dynamic = int8_dynamic_onnx(
        variants["fp32"], tmp_path_factory.getbasetemp() / "engine-models" / "dyn.onnx"
    )
    workdir = engine_workdir(demo_workdir, {"int8": dynamic}, tmp_path_factory.mktemp("engine-dynamic"))
    result = build_variant(demo_spec, workdir, "int8", aot=True)
    assert not result.passed
    refused = {n.name for n in result.aot.unsupported_nodes}
    graph = onnx.load(str(dynamic), load_external_data=False).graph
    dynamic_nodes = {n.name for n in graph.node if n.op_type in {"MatMulInteger", "DynamicQuantizeLinear"}}
    assert dynamic_nodes and dynamic_nodes <= refused
    assert "MatMulInteger x" in result.aot.error
    assert not Manifest.load(workdir, demo_spec.name).stages["engine"].passed
