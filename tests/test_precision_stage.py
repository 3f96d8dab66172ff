"""The precision stage end to end on the real all-MiniLM-L6-v2 (feature extraction), real held-out text.

One session-scoped export; the variants are built with real onnxruntime quantizers and gated on
real sentences. The required case: a deliberately bad INT8 setting (Q/DQ on every op) is rejected
by the gate and rescued automatically by sensitivity-guided mixed precision.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fixtures.export_builders import make_spec, minilm_path, write_texts

from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow


def _spec(base: Path):
    train = base / "train.jsonl"
    lines = (Path(__file__).resolve().parents[1] / "examples/minilm-intent/data/train.jsonl").read_text()
    train.write_text("\n".join(lines.splitlines()[:48]) + "\n", encoding="utf-8")
    return make_spec(
        base,
        name="minilm-embed",
        task="feature-extraction",
        source={"path": str(minilm_path())},
        data={"train": str(train), "eval": str(write_texts(base / "eval.jsonl", 40))},
        precision={
            "calibration": {"samples": 48},
            "budget": {"min_cosine": 0.98},
            "sensitivity": {"max_evaluations": 16},
        },
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """A verified FP32 ONNX of MiniLM (mean-pooled, L2-normalised embeddings) in its own workdir."""
    from triton_bundle.export.stage import export_model

    base = tmp_path_factory.mktemp("precision")
    spec = _spec(base)
    workdir = base / "artifacts"
    export_model(spec, workdir)
    return spec, workdir


def _fresh_workdir(exported, where: Path) -> Path:
    """A workdir of its own holding only the export record, so tests never see each other's variants."""
    spec, workdir = exported
    manifest = Manifest(model=spec.name)
    manifest.record(Manifest.load(workdir, spec.name).require("export", "fixture").model_copy(deep=True))
    manifest.save(where)
    return where


@pytest.fixture(scope="module")
def published(exported, tmp_path_factory: pytest.TempPathFactory):
    """The spec's three variants with default settings, built and gated once for the module."""
    from triton_bundle.precision.stage import make_variants

    spec, _ = exported
    workdir = _fresh_workdir(exported, tmp_path_factory.mktemp("published"))
    return spec, workdir, make_variants(spec, workdir)


def _cosines(a: Path, b: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    ea, eb = (
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)[0] for p in (a, b)
    )
    return (ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1))


def _eval_feeds(spec, workdir: Path) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    export = Manifest.load(workdir, spec.name).require("export", "fixture")
    tokenizer = AutoTokenizer.from_pretrained(export.artifact("checkpoint"))
    texts = [json.loads(line)["text"] for line in spec.resolve(spec.data.eval).read_text().splitlines()]
    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=spec.shapes.sequence.max, return_tensors="np"
    )
    return {name: enc[name].astype(np.int64) for name in export.details["input_names"]}


def test_fp16_and_cpu_int8_are_built_gated_and_published(published) -> None:
    spec, workdir, result = published
    fp32 = Manifest.load(workdir, spec.name).stages["export"].artifact("onnx")
    record = Manifest.load(workdir, spec.name).require("precision", "make_variants")
    for variant in ("fp16", "int8-dynamic"):
        report = result.reports[variant]
        assert report.gate.metric == "mean_cosine" and report.passed, report.markdown()
        model = workdir / "precision" / variant / "model.onnx"
        assert record.artifacts[variant] == model.resolve()
        assert json.loads((model.parent / "gate.json").read_text())["passed"] is True
        # The gate's number is what an independent run of both models gives.
        cos = _cosines(fp32, model, _eval_feeds(spec, workdir))
        assert cos.mean() == pytest.approx(report.metrics.mean_cosine, abs=1e-4)
        assert record.details["gates"][variant]["passed"] is True
    assert record.details["gates"]["fp16"]["tensorrt_compatible"] is True
    assert record.details["gates"]["int8-dynamic"]["tensorrt_compatible"] is False
    # FP16 halves the weights; CPU INT8 stores MatMul weights as INT8 (embeddings stay FP32).
    assert result.reports["fp16"].size_mb < 0.6 * result.fp32.size_mb
    assert result.reports["int8-dynamic"].size_mb < 0.8 * result.fp32.size_mb
    fp16 = onnx.load(str(workdir / "precision" / "fp16" / "model.onnx"))
    assert [i.type.tensor_type.elem_type for i in fp16.graph.input] == [onnx.TensorProto.INT64] * 3
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kept_fp32 = {n.op_type for n in fp16.graph.node if n.op_type in {"LayerNormalization", "Softmax"}}
    assert kept_fp32  # the sensitive ops are still there, fed by casts to FP32
    assert result.reports["fp16"].fp16.fp32_tail_nodes  # the pooling / L2 normalisation stays FP32


def test_default_int8_is_tensorrt_style_qdq(published) -> None:
    _, workdir, result = published
    report = result.reports["int8"]
    assert report.passed, report.markdown()  # directly, or after keeping a few layers in float
    assert report.tensorrt_compatible and report.calibration.samples == 48
    assert report.calibration.source.endswith("train.jsonl")  # calibrated on train, gated on eval
    graph = onnx.load(str(workdir / "precision" / "int8" / "model.onnx")).graph
    consumers = {
        n.op_type for n in graph.node if any(i.endswith("_DequantizeLinear_Output") for i in n.input)
    }
    assert consumers == {"MatMul"}  # Q/DQ on GEMM inputs only (MiniLM has no Gemm)
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            assert inits[node.input[2]].data_type == onnx.TensorProto.INT8  # INT8, not UINT8
            assert not onnx.numpy_helper.to_array(inits[node.input[2]]).any()  # zero-point 0
            if node.input[0] in inits and inits[node.input[0]].dims:  # a weight: one scale per channel
                assert onnx.numpy_helper.to_array(inits[node.input[1]]).size > 1
        if node.op_type == "Add" and any(i.endswith("bias") for i in node.input):
            bias = next(i for i in node.input if i.endswith("bias"))
            assert inits[bias].data_type == onnx.TensorProto.FLOAT  # biases are not quantized


def test_tensorrt_accepts_the_fp16_and_int8_graphs(published) -> None:
    """TensorRT for RTX parses and builds them ahead of time on a CPU host (a strongly typed build)."""
    pytest.importorskip("tensorrt_rtx")
    from triton_bundle.engine.stage import build_variant

    spec, workdir, _ = published
    for variant in ("fp16", "int8"):
        result = build_variant(spec, workdir, variant, aot=True, force=True)
        assert result.passed, result


def test_quantize_everything_is_caught_then_rescued_by_mixed_precision(exported, tmp_path: Path) -> None:
    from triton_bundle.precision.stage import make_variants

    spec, _ = exported
    workdir = _fresh_workdir(exported, tmp_path / "artifacts")
    bad = spec.model_copy(deep=True)
    bad.precision.quantize_all = True
    result = make_variants(bad, workdir, variants=["int8"], force=True)
    report = result.reports["int8"]
    steps = report.sensitivity.steps
    assert steps[0].phase == "baseline" and not steps[0].passed  # the gate caught it
    assert steps[0].metric < 0.98
    assert report.passed, report.markdown()  # ...and the search rescued it
    assert 0 < len(report.kept_float_layers) < report.quantizable_layers
    assert report.sensitivity.evaluations <= 16
    for layer in report.kept_float_layers:  # each kept layer's cost: the gate fails if it is quantized
        assert layer.metric_if_quantized is None or layer.metric_if_quantized < 0.98
    model = workdir / "precision" / "int8" / "model.onnx"
    graph = onnx.load(str(model)).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 0
    zero_points = [
        onnx.numpy_helper.to_array(i)
        for i in graph.initializer
        if i.name.endswith("_zero_point") and i.data_type == onnx.TensorProto.INT8
    ]
    assert zero_points and all((z == 0).all() for z in zero_points)  # symmetric INT8 (TensorRT)
    # Kept layers compute in float: their weights stay FP32 initializers (no INT8 copy, no DQ).
    fp32 = Manifest.load(workdir, spec.name).stages["export"].artifact("onnx")
    fp32_weights = {i.name for i in onnx.load(str(fp32), load_external_data=False).graph.initializer}
    kept_nodes = {n for layer in report.kept_float_layers for n in layer.nodes}
    float_weights = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    for node in graph.node:
        if node.name in kept_nodes and node.op_type in {"MatMul", "Gemm"}:
            original = node.input[1].removesuffix("_DequantizeLinear_Output")
            if original in fp32_weights:
                assert node.input[1] in float_weights, node.name
    assert _cosines(fp32, model, _eval_feeds(spec, workdir)).mean() >= 0.98
    gates = Manifest.load(workdir, spec.name).stages["precision"].details["gates"]
    assert gates["int8"]["kept_float_layers"] == [k.layer for k in report.kept_float_layers]
    assert gates["int8"]["calibration"]["samples"] == 48
    assert gates["int8"]["tensorrt_compatible"] is False  # TensorRT refuses Q/DQ on scalar constants


def _cli():
    """The precision command on an app of its own (the lead mounts it on `triton-bundle`)."""
    import typer

    from triton_bundle.precision.cli import precision_command

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("precision")(precision_command)
    return app


def test_a_variant_past_the_budget_is_rejected_and_not_published(exported, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from triton_bundle.atomic import ArtifactExistsError
    from triton_bundle.precision.stage import make_variants

    spec, _ = exported
    workdir = _fresh_workdir(exported, tmp_path / "artifacts")
    make_variants(spec, workdir, variants=["int8-dynamic"])
    strict = spec.model_copy(deep=True)
    strict.precision.budget.min_cosine = 0.99999  # no INT8 model meets this
    strict.precision.sensitivity.enabled = False
    result = make_variants(strict, workdir, variants=["int8-dynamic"], force=True)
    assert not result.reports["int8-dynamic"].passed
    assert not (workdir / "precision" / "int8-dynamic").exists()  # the earlier pass is withdrawn too
    rejected = workdir / "precision" / "int8-dynamic-rejected"
    assert json.loads((rejected / "gate.json").read_text())["gate"]["passed"] is False
    assert "REJECTED" in (rejected / "gate.md").read_text()
    record = Manifest.load(workdir, spec.name).stages["precision"]
    assert "int8-dynamic" not in record.artifacts and not record.passed

    # The CLI prints the table and exits non-zero, naming the report.
    spec_file = tmp_path / "strict.yaml"
    spec_file.write_text(
        json.dumps(strict.model_dump(mode="json", exclude={"base_dir"})), encoding="utf-8"
    )  # JSON is YAML
    out = CliRunner().invoke(
        _cli(), ["precision", str(spec_file), "-w", str(workdir), "-v", "int8-dynamic", "-f"]
    )
    assert out.exit_code == 1, out.output
    assert "int8-dynamic" in out.output and "rejected" in out.output and "gate.md" in out.output
    # Re-running one variant keeps the others' entries; without --force nothing is replaced silently.
    make_variants(spec, workdir, variants=["fp16"], force=True)
    gates = Manifest.load(workdir, spec.name).stages["precision"].details["gates"]
    assert gates["fp16"]["passed"] and not gates["int8-dynamic"]["passed"]
    again = CliRunner().invoke(_cli(), ["precision", str(spec_file), "-w", str(workdir), "-v", "fp16"])
    assert isinstance(again.exception, ArtifactExistsError)
