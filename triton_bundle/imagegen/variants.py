"""Precision variants of an image generator, gated on image quality against FP32 at the same seeds.

Each variant generates the images of image.gate_seeds (same latents, same classes) and is judged on the
uint8 pixels a client would receive: mean PSNR (precision.budget.min_psnr_db), mean SSIM (min_ssim) and,
for class-conditional digit generators, how often the digit classifier labels the variant's image as it
labels FP32's (min_class_agreement: the 7 is still a 7). INT8 (Q/DQ, TensorRT's layout) is calibrated on
latents of other seeds than the gate's, so the gate does not measure on what the ranges were fitted to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_bundle.imagegen import contract
from triton_bundle.imagegen.gate import image_variant_report
from triton_bundle.imagegen.metrics import compare_images
from triton_bundle.manifest import Manifest
from triton_bundle.precision import int8_qdq
from triton_bundle.precision.calibration import CalibrationSet
from triton_bundle.precision.evaluate import session
from triton_bundle.precision.gated import fp16_variant, int8_dynamic_variant, publish_gated_variants
from triton_bundle.precision.report import CalibrationInfo, VariantReport
from triton_bundle.spec import ModelSpec

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
        compared = f"{quality.images} images at image.gate_seeds"
        return image_variant_report(
            variant, path, self.fp32, quality, self.spec.precision.budget, compared, **fields
        )


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
    "fp16": fp16_variant,
    "int8-dynamic": int8_dynamic_variant,
    "int8": _int8_qdq,
}


def make_image_variants(spec: ModelSpec, workdir: Path, wanted: list[str]):
    """Build, gate, publish and record the generator's variants (the precision stage's image path)."""
    from triton_bundle.imagegen.classifier import digit_classifier
    from triton_bundle.imagegen.export import gate_inputs

    manifest = Manifest.load(workdir, spec.name)
    fp32 = manifest.require("export", "triton-bundle export SPEC").artifact("onnx")
    feeds = gate_inputs(spec)
    digits = spec.image.dataset == "digits" and bool(spec.labels) and spec.image.channels == 1
    classifier = digit_classifier(spec.image.height, workdir) if digits else None
    reference = generated_pixels(fp32, spec, feeds)
    return publish_gated_variants(
        manifest, workdir, fp32, wanted, IMAGE_BUILDERS,
        lambda scratch: _Images(spec, fp32, feeds, reference, classifier, scratch),
    )  # fmt: skip
