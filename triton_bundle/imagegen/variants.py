"""Precision variants of an image generator, gated on image quality against FP32 at the same seeds.

Each variant generates the images of image.gate_seeds (same latents, same classes) and is judged on the
uint8 pixels a client would receive: mean PSNR (precision.budget.min_psnr_db), mean SSIM (min_ssim) and,
for class-conditional digit generators, how often the digit classifier labels the variant's image as it
labels FP32's (min_class_agreement: the 7 is still a 7). INT8 (Q/DQ, TensorRT's layout) is calibrated on
latents of other seeds than the gate's, so the gate does not measure on what the ranges were fitted to.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_bundle.imagegen import contract
from triton_bundle.imagegen.metrics import ImageQuality, compare_images
from triton_bundle.manifest import Manifest
from triton_bundle.precision import fp16, int8_dynamic, int8_qdq
from triton_bundle.precision.calibration import CalibrationSet
from triton_bundle.precision.evaluate import VariantMetrics, session
from triton_bundle.precision.gate import GateResult, _check
from triton_bundle.precision.report import CalibrationInfo, VariantReport
from triton_bundle.spec import AccuracyBudget, ModelSpec

CALIBRATION_SEED_BASE = 1_000_000  # calibration latents come from seeds the gates never use
GATE_BATCH = 16


def generated_pixels(onnx_path: Path, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 [B, H, W, C] images of `onnx_path` for these feeds (run GATE_BATCH at a time)."""
    from triton_bundle.imagegen.png import to_uint8

    run = session(onnx_path)
    n = len(feeds[contract.LATENT])
    parts = [
        run.run([contract.GENERATED], {k: v[i : i + GATE_BATCH] for k, v in feeds.items()})[0]
        for i in range(0, n, GATE_BATCH)
    ]
    return to_uint8(np.concatenate(parts).astype(np.float32), spec.image.value_range, spec.image.layout)


def judge_images(quality: ImageQuality, budget: AccuracyBudget) -> GateResult:
    checks = [
        _check("psnr_db", min(quality.psnr_db, 1e9), budget.min_psnr_db, True),
        _check("ssim", quality.ssim, budget.min_ssim, True),
    ]
    if quality.class_agreement is not None:
        checks.append(_check("class_agreement", quality.class_agreement, budget.min_class_agreement, True))
    primary = checks[0]
    return GateResult(metric="psnr_db", value=primary.value, budget=primary.limit, passed=all(c.passed for c in checks),
                      margin=min(c.margin for c in checks), checks=checks)  # fmt: skip


@dataclass
class _Images:
    spec: ModelSpec
    fp32: Path
    feeds: dict[str, np.ndarray]
    reference: np.ndarray  # FP32's uint8 images
    classifier: object | None
    scratch: Path

    def report(self, variant: str, path: Path, **fields) -> tuple[VariantReport, Path | None]:
        quality = compare_images(
            self.reference, generated_pixels(path, self.spec, self.feeds), self.classifier
        )
        gate = judge_images(quality, self.spec.precision.budget)
        metrics = VariantMetrics(examples=quality.images, psnr_db=min(quality.psnr_db, 1e9), max_abs=0.0,
                                 label_agreement=quality.class_agreement)  # fmt: skip
        notes = [
            f"{quality.images} images at image.gate_seeds vs FP32: PSNR {quality.psnr_db:.1f} dB (worst "
            f"{quality.min_psnr_db:.1f}), SSIM {quality.ssim:.4f}"
            + (
                ""
                if quality.class_agreement is None
                else f", digit classifier agreement {quality.class_agreement:.2%}"
            ),
            *fields.pop("notes", []),
        ]
        report = VariantReport(variant=variant, passed=gate.passed, size_mb=path.stat().st_size / 1e6,
                               fp32_size_mb=self.fp32.stat().st_size / 1e6, gate=gate, metrics=metrics, notes=notes,
                               **fields)  # fmt: skip
        return report, path if gate.passed else None


def _fp16(ctx: _Images):
    path = ctx.scratch / "fp16.onnx"
    info = fp16.convert_fp16(ctx.fp32, path, ctx.spec.precision.fp16_keep_fp32_ops)
    return ctx.report("fp16", path, backend=fp16.CONVERTER, tensorrt_compatible=True, fp16=info)


def _int8_dynamic(ctx: _Images):
    path = ctx.scratch / "int8-dynamic.onnx"
    int8_dynamic.quantize_dynamic_cpu(ctx.fp32, path)
    return ctx.report("int8-dynamic", path, backend=int8_dynamic.BACKEND, tensorrt_compatible=False)


def _int8_qdq(ctx: _Images):
    from triton_bundle.imagegen.export import gate_inputs

    path = ctx.scratch / "int8.onnx"
    cal = ctx.spec.precision.calibration
    seeds = list(range(CALIBRATION_SEED_BASE, CALIBRATION_SEED_BASE + cal.samples))
    feeds = gate_inputs(ctx.spec, seeds)
    batches = [{k: v[i : i + GATE_BATCH] for k, v in feeds.items()} for i in range(0, len(seeds), GATE_BATCH)]
    calibration = CalibrationSet(batches, f"latents of seeds {seeds[0]}..{seeds[-1]}", len(seeds), cal.method)
    op_types = None if ctx.spec.precision.quantize_all else list(ctx.spec.precision.int8_op_types)
    settings = int8_qdq.QdqSettings(method=cal.method, op_types=op_types)
    int8_qdq.quantize_qdq(ctx.fp32, path, settings, ctx.scratch / "int8-calibration.json", calibration)
    return ctx.report(
        "int8", path, backend=int8_qdq.BACKEND, tensorrt_compatible=not settings.quantize_all, quantization=settings,
        calibration=CalibrationInfo(method=cal.method, samples=len(seeds), source=calibration.source),
    )  # fmt: skip


IMAGE_BUILDERS: dict[str, Callable[[_Images], tuple]] = {
    "fp16": _fp16,
    "int8-dynamic": _int8_dynamic,
    "int8": _int8_qdq,
}


def make_image_variants(spec: ModelSpec, workdir: Path, wanted: list[str]):
    """Build, gate, publish and record the generator's variants (the precision stage's image path)."""
    from triton_bundle.imagegen.classifier import digit_classifier
    from triton_bundle.imagegen.export import gate_inputs
    from triton_bundle.precision.stage import (
        PRECISION_DIR,
        Fp32Summary,
        PrecisionResult,
        _Built,
        _publish,
        _record,
    )

    manifest = Manifest.load(workdir, spec.name)
    fp32 = manifest.require("export", "triton-bundle export SPEC").artifact("onnx")
    feeds = gate_inputs(spec)
    digits = spec.image.dataset == "digits" and bool(spec.labels) and spec.image.channels == 1
    classifier = digit_classifier(spec.image.height, workdir) if digits else None
    reports, published, rejected = {}, {}, {}
    (workdir / PRECISION_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".work-", dir=workdir / PRECISION_DIR) as scratch:
        ctx = _Images(spec, fp32, feeds, generated_pixels(fp32, spec, feeds), classifier, Path(scratch))
        for variant in wanted:
            report, model = IMAGE_BUILDERS[variant](ctx)
            where = _publish(_Built(report, model), workdir)
            reports[variant] = report
            (published if report.passed else rejected)[variant] = where
    summary = Fp32Summary(onnx=str(fp32), size_mb=fp32.stat().st_size / 1e6)
    manifest.record(_record(manifest, reports, published, summary))
    manifest.save(workdir)
    return PrecisionResult(reports=reports, fp32=summary, published=published, rejected=rejected)
