"""Precision variants of image classifiers (ViT, ResNet) and a tensor model (a DCGAN-like generator).

Real onnxruntime quantizers, calibrated on the spec's own images / `.npz` rows; gated on label
agreement + accuracy (images, gold labels from the data) or PSNR / max-abs per output (tensors);
TensorRT for RTX then accepts every published TensorRT variant ahead of time.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fixtures.export_builders import (
    LABELS,
    draw_images,
    make_spec,
    save_module_weights,
    save_vision_checkpoint,
    tensor_spec_fields,
    write_latents,
)

from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow
PRECISION_OF = {"fp16": "FP16", "int8": "INT8"}


def _fresh(spec, exported: Path, where: Path) -> Path:
    """A workdir holding only the export record, so tests never see each other's variants."""
    manifest = Manifest(model=spec.name)
    manifest.record(Manifest.load(exported, spec.name).require("export", "fixture").model_copy(deep=True))
    manifest.save(where)
    return where


@pytest.fixture(scope="module", params=["vit", "resnet"])
def image_model(request, tmp_path_factory: pytest.TempPathFactory):
    from triton_bundle.export.stage import export_model

    base = tmp_path_factory.mktemp(f"precision-{request.param}")
    spec = make_spec(
        base,
        name=f"tiny-{request.param}",
        task="image-classification",
        source={"path": str(save_vision_checkpoint(base / "checkpoint", request.param))},
        data={"eval": str(draw_images(base / "eval", 9)), "train": str(draw_images(base / "train", 12))},
        precision={"calibration": {"samples": 12, "batch_size": 4}},
    )
    return spec, base, export_model(spec, base / "exported")


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory):
    from triton_bundle.export.stage import export_model

    base = tmp_path_factory.mktemp("precision-generator")
    latents = write_latents(base / "eval.npz", rows=10)
    fields = tensor_spec_fields(
        save_module_weights(base / "generator.safetensors", "TinyGenerator", width=8),
        latents,
        "TinyGenerator",
        name="tiny-gan",
        module_kwargs={"width": 8},
        outputs=[{"name": "image", "dtype": "float32", "shape": ["batch", 3, 32, 32]}],
        data={"eval": str(latents), "calibration": str(write_latents(base / "cal.npz", rows=24, seed=5))},
        precision={"calibration": {"samples": 24}, "budget": {"min_psnr_db": 35, "max_abs_error": 0.05}},
    )
    spec = make_spec(base, **fields)
    return spec, base, export_model(spec, base / "exported")


def _aot(spec, workdir: Path, variant: str):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX: pip install -e '.[trt-rtx]'")
    from triton_bundle.engine.stage import build_variant

    result = build_variant(spec, workdir, variant, aot=True)
    assert result.passed, result.aot.error
    compute = result.aot.layer_precisions.compute_layers
    assert max(compute, key=compute.__getitem__) == PRECISION_OF[variant], compute
    return result


def _render_80(print_fn, *args) -> str:
    """What a person sees in an 80-column terminal (rich's default without one)."""
    import io

    from rich.console import Console

    out = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    print_fn(*args, out=out)
    text = out.export_text()
    assert "…" not in text, text  # nothing cut short
    return text


def _check_reports_at_80_columns(spec, result, export, engines) -> None:
    from triton_bundle.engine.cli import print_build
    from triton_bundle.export.cli import print_export
    from triton_bundle.precision.cli import print_precision

    text = _render_80(print_precision, result, spec.name)
    for variant, report in result.reports.items():
        assert variant in text and report.gate.metric in text
    for where in result.published.values():
        assert str(where) in text
    text = _render_80(print_export, export)
    assert str(export.onnx) in text and str(export.report_path) in text
    for case in {o.case for o in export.report.outputs}:
        assert case in text
    text = _render_80(print_build, engines)
    for engine in engines:
        assert engine.variant in text and str(engine.directory) in text
        for name, (low, opt, high) in engine.profile_plan.profile.shapes.items():
            assert name in text
            row = next(line for line in text.splitlines() if name in line and "│" in line)
            assert [c.strip() for c in row.split("│")[2:5]] == [
                "x".join(map(str, d)) for d in (low, opt, high)
            ]
    assert "sequence" not in text  # vision and tensor profiles have no sequence dim


def _fp32_labels(spec, workdir: Path) -> list[str]:
    """FP32 onnxruntime's labels on the eval images, preprocessed as the export recorded."""
    import transformers

    from triton_bundle.export.image_data import load_image_paths, read_rgb

    record = Manifest.load(workdir, spec.name).require("export", "fixture")
    processor = transformers.AutoImageProcessor.from_pretrained(record.artifact("checkpoint"))
    paths = load_image_paths(spec.resolve(spec.data.eval)).paths
    pixels = processor([read_rgb(p) for p in paths], return_tensors="np")["pixel_values"]
    session = ort.InferenceSession(str(record.artifact("onnx")), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"pixel_values": pixels.astype(np.float32)})[0]
    return [LABELS[i] for i in logits.argmax(-1)]


def test_image_variants_are_gated_on_labels_and_accepted_by_tensorrt(image_model, tmp_path: Path) -> None:
    from triton_bundle.precision.stage import make_variants

    spec, base, _ = image_model
    workdir = _fresh(spec, base / "exported", tmp_path)
    result = make_variants(spec, workdir)

    rows = spec.resolve(spec.data.eval).read_text().splitlines()
    gold = [json.loads(row)["label"] for row in rows]
    expected = np.mean([p == g for p, g in zip(_fp32_labels(spec, workdir), gold, strict=True)])
    assert result.fp32.accuracy == pytest.approx(expected)
    for name, report in result.reports.items():
        assert report.gate.metric == "label_agreement", name
        assert {c.name for c in report.gate.checks} >= {"label_agreement", "accuracy_drop"}
        assert report.metrics.examples == 9 and report.metrics.accuracy_fp32 == pytest.approx(expected)
    assert set(result.published) == {"fp16", "int8", "int8-dynamic"}, {
        n: r.gate.failures() for n, r in result.reports.items()
    }
    int8 = result.reports["int8"]
    assert int8.calibration.source.endswith("train.jsonl") and int8.calibration.samples == 12
    graph = onnx.load(str(result.published["int8"] / "model.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    engines = [_aot(spec, workdir, variant) for variant in ("fp16", "int8")]
    _check_reports_at_80_columns(spec, result, image_model[2], engines)


def test_tensor_variants_are_gated_per_output_and_accepted_by_tensorrt(generator, tmp_path: Path) -> None:
    from triton_bundle.precision.stage import make_variants

    spec, base, _ = generator
    workdir = _fresh(spec, base / "exported", tmp_path)
    result = make_variants(spec, workdir)
    for name, report in result.reports.items():
        assert report.gate.metric == "psnr_db", name
        assert [c.name for c in report.gate.checks] == ["psnr_db", "max_abs"]
        assert list(report.metrics.outputs) == ["image"]
        assert report.metrics.outputs["image"].psnr_db == report.gate.value
    assert set(result.published) == {"fp16", "int8", "int8-dynamic"}, {
        n: r.gate.failures() for n, r in result.reports.items()
    }
    assert result.reports["int8"].calibration.source.endswith("cal.npz")
    # Conv / ConvTranspose get Q/DQ too: TensorRT runs the generator's convolutions in INT8.
    graph = onnx.load(str(result.published["int8"] / "model.onnx"))
    dequantized = {i for n in graph.graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    convs = [n for n in graph.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert convs and all(n.input[0] in dequantized for n in convs)
    engines = [_aot(spec, workdir, variant) for variant in ("fp16", "int8")]
    _check_reports_at_80_columns(spec, result, generator[2], engines)


def test_a_miscalibrated_int8_is_rejected_with_its_reason(generator, tmp_path: Path) -> None:
    from triton_bundle.engine.errors import SourceOnnxError
    from triton_bundle.engine.stage import source_onnx
    from triton_bundle.precision.stage import make_variants

    spec, base, _ = generator
    bad = spec.model_copy(deep=True)
    # Calibrated on inputs 1000x too large: the INT8 ranges are so coarse the output is noise.
    latents = np.load(spec.resolve(spec.data.eval))["latent"]
    np.savez(tmp_path / "scaled.npz", latent=latents * 1000.0)
    bad.data.calibration = tmp_path / "scaled.npz"
    bad.precision.sensitivity.enabled = False
    workdir = _fresh(spec, base / "exported", tmp_path / "work")
    result = make_variants(bad, workdir, variants=["int8"])

    report = result.reports["int8"]
    assert not report.passed and "int8" in result.rejected
    assert report.gate.failures() and report.gate.failures()[0].startswith("psnr_db")
    assert "needs >= 35" in report.gate.failures()[0]
    assert "psnr_db" in (result.rejected["int8"] / "gate.md").read_text()
    assert not (workdir / "precision" / "int8").exists()
    with pytest.raises(SourceOnnxError):  # and build has nothing to turn into an engine
        source_onnx(spec, Manifest.load(workdir, spec.name), workdir, "int8")


def test_calibration_needs_real_data_unless_random_is_asked_for(generator, tmp_path: Path) -> None:
    from triton_bundle.precision.calibration import RandomCalibrationWarning
    from triton_bundle.precision.errors import CalibrationDataError, PrecisionError
    from triton_bundle.precision.stage import make_variants

    spec, base, _ = generator
    missing = spec.model_copy(deep=True)
    missing.data.calibration = tmp_path / "missing.npz"
    with pytest.raises(CalibrationDataError, match="allow_random"):
        make_variants(missing, _fresh(spec, base / "exported", tmp_path / "a"), variants=["int8"])
    missing.precision.calibration.allow_random = True
    missing.precision.calibration.samples = 8
    with pytest.warns(RandomCalibrationWarning):
        result = make_variants(missing, _fresh(spec, base / "exported", tmp_path / "b"), variants=["int8"])
    assert result.reports["int8"].calibration.source == "random"

    typo = spec.model_copy(deep=True)
    typo.precision.budget.outputs = {"images": {"min_psnr_db": 20}}
    with pytest.raises(PrecisionError, match=r"'images'.*\['image'\]"), warnings.catch_warnings():
        make_variants(typo, _fresh(spec, base / "exported", tmp_path / "c"), variants=["fp16"])


def test_image_gold_labels_as_ids_score_like_names(image_model, tmp_path: Path) -> None:
    from triton_bundle.precision.stage import make_variants

    spec, base, _ = image_model
    rows = [json.loads(line) for line in spec.resolve(spec.data.eval).read_text().splitlines()]
    ids = spec.resolve(spec.data.eval).with_name("eval-ids.jsonl")
    ids.write_text("\n".join(json.dumps(r | {"label": LABELS.index(r["label"])}) for r in rows) + "\n")
    by_ids = spec.model_copy(deep=True)
    by_ids.data.eval = ids
    names = make_variants(spec, _fresh(spec, base / "exported", tmp_path / "names"), variants=["fp16"])
    numbers = make_variants(by_ids, _fresh(spec, base / "exported", tmp_path / "ids"), variants=["fp16"])
    assert numbers.fp32.accuracy == pytest.approx(names.fp32.accuracy)
    assert numbers.fp32.macro_f1 == pytest.approx(names.fp32.macro_f1)
