"""Precision variants of the diffusion UNet, gated on the images the served loop makes, and the
quality-vs-steps table.

A variant is judged on whole sampled images, not on one UNet call: the DDIM loop (numpy, as served)
drives the variant's UNet from the gate seeds' noise for `diffusion.steps` steps, and its uint8 images
are compared with FP32's: mean PSNR, mean SSIM and digit-classifier agreement (the 7 is still a 7),
against precision.budget. INT8 (Q/DQ) is calibrated on the UNet inputs FP32's own sampling loop visits
(every step, seeds the gates never use). `precision.quantize_all` puts Q/DQ on every op (time embedding,
group norms, activations): the known-bad variant the gate must reject.

The steps table samples FP32 at each of `diffusion.steps_table` and compares with the most steps
there (PSNR / SSIM vs that reference, classifier agreement with the asked class, seconds per image).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_bundle.atomic import write_text_atomic
from triton_bundle.diffusion import unet as du
from triton_bundle.diffusion.ddim import DDIMSchedule, sample
from triton_bundle.diffusion.train import gate_inputs
from triton_bundle.imagegen.gate import image_variant_report
from triton_bundle.imagegen.metrics import compare_images
from triton_bundle.imagegen.png import to_uint8
from triton_bundle.imagegen.seeds import latents_for_seeds
from triton_bundle.manifest import Manifest
from triton_bundle.precision import int8_qdq
from triton_bundle.precision.calibration import CalibrationSet
from triton_bundle.precision.evaluate import session
from triton_bundle.precision.gated import fp16_variant, int8_dynamic_variant, publish_gated_variants
from triton_bundle.precision.record import StepsRow
from triton_bundle.precision.report import CalibrationInfo, VariantReport
from triton_bundle.spec import ModelSpec

CALIBRATION_SEED_BASE = 1_000_000  # calibration noise comes from seeds the gates never use
STEPS_FILE = "steps.json"
STEPS_MARKDOWN = "steps.md"


@dataclass
class _Sampler:
    """Samples gate-seed images with any UNet graph, as the server's loop does."""

    spec: ModelSpec
    schedule: DDIMSchedule
    noise: np.ndarray
    classes: np.ndarray

    def pixels(self, onnx_path: Path, steps: int | None = None, record: list | None = None) -> np.ndarray:
        run = du.ort_unet_fn(session(onnx_path))
        if record is not None:  # calibration: keep every UNet input the loop sends
            inner = run

            def run(x, t, labels):
                record.append({du.SAMPLE: x.copy(), du.TIMESTEP: t.copy(), du.CLASS_LABELS: labels.copy()})
                return inner(x, t, labels)

        steps = np.full(len(self.noise), steps or self.spec.diffusion.steps)
        images = sample(run, self.schedule, self.noise, self.classes, steps)
        return to_uint8(images, self.spec.image.value_range, self.spec.image.layout)


def _calibration(ctx: _Sampler, fp32: Path) -> CalibrationSet:
    samples = ctx.spec.precision.calibration.samples
    seeds = list(range(CALIBRATION_SEED_BASE, CALIBRATION_SEED_BASE + samples))
    calib = _Sampler(ctx.spec, ctx.schedule, latents_for_seeds(seeds, ctx.spec.image.latent_shape),
                     np.asarray(seeds) % len(np.unique(ctx.classes)))  # fmt: skip
    batches: list = []
    calib.pixels(fp32, record=batches)
    source = f"UNet inputs of FP32's {ctx.spec.diffusion.steps}-step loop, seeds {seeds[0]}..{seeds[-1]}"
    return CalibrationSet(
        batches, source, samples * ctx.spec.diffusion.steps, ctx.spec.precision.calibration.method
    )


@dataclass
class _Gate:
    spec: ModelSpec
    fp32: Path
    sampler: _Sampler
    reference: np.ndarray  # FP32's uint8 images at the gate seeds
    classifier: object | None
    scratch: Path

    def report(self, variant: str, path: Path, **fields) -> tuple[VariantReport, Path | None]:
        quality = compare_images(self.reference, self.sampler.pixels(path), self.classifier)
        compared = f"{quality.images} images ({self.spec.diffusion.steps} DDIM steps, gate seeds)"
        return image_variant_report(
            variant, path, self.fp32, quality, self.spec.precision.budget, compared, **fields
        )


def _int8_qdq(ctx: _Gate):
    path = ctx.scratch / "int8.onnx"
    calibration = _calibration(ctx.sampler, ctx.fp32)
    everything = ctx.spec.precision.quantize_all
    settings = int8_qdq.QdqSettings(
        method=calibration.method, op_types=None if everything else list(ctx.spec.precision.int8_op_types)
    )
    int8_qdq.quantize_qdq(ctx.fp32, path, settings, ctx.scratch / "int8-calibration.json", calibration)
    notes = ["Q/DQ on every op (time embedding, group norms, activations)"] if everything else []
    return ctx.report(
        "int8", path, backend=int8_qdq.BACKEND, tensorrt_compatible=not everything, quantization=settings,
        calibration=CalibrationInfo(method=calibration.method, samples=calibration.samples, source=calibration.source),
        notes=notes,
    )  # fmt: skip


BUILDERS = {"fp16": fp16_variant, "int8-dynamic": int8_dynamic_variant, "int8": _int8_qdq}


def steps_table(spec: ModelSpec, fp32: Path, sampler: _Sampler, classifier) -> list[StepsRow]:
    """FP32 quality and time at each of diffusion.steps_table, against the most steps listed."""
    timed = {}
    for steps in sorted(set(spec.diffusion.steps_table)):
        started = time.perf_counter()
        pixels = sampler.pixels(fp32, steps)
        timed[steps] = (pixels, (time.perf_counter() - started) / len(pixels))
    reference = timed[max(timed)][0]
    rows = []
    for steps, (pixels, seconds) in timed.items():
        quality = compare_images(reference, pixels)
        agreement = (
            float((classifier.predict(pixels) == sampler.classes).mean()) if classifier else float("nan")
        )
        rows.append(StepsRow(steps=steps, psnr_db=min(quality.psnr_db, 100.0), ssim=quality.ssim,
                             class_agreement=agreement, seconds_per_image=seconds))  # fmt: skip
    return rows


def steps_markdown(rows: list[StepsRow]) -> str:
    most = max(r.steps for r in rows)
    lines = [
        f"# Quality vs denoising steps (FP32, vs {most} steps)",
        "",
        "| steps | PSNR dB | SSIM | classifier agrees with asked class | ms / image |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.steps} | {r.psnr_db:.1f} | {r.ssim:.3f} | {r.class_agreement:.0%} | {r.seconds_per_image * 1000:.1f} |"
        )
    return "\n".join(lines) + "\n"


def make_diffusion_variants(spec: ModelSpec, workdir: Path, wanted: list[str]):
    """Build, gate, publish and record the UNet's variants, and write the steps table (precision stage)."""
    from triton_bundle.imagegen.classifier import digit_classifier
    from triton_bundle.precision.stage import PRECISION_DIR

    manifest = Manifest.load(workdir, spec.name)
    export = manifest.require("export", "triton-bundle export SPEC")
    fp32, checkpoint = export.artifact("onnx"), export.artifact("checkpoint")
    labels = du.load_labels(checkpoint)
    seeds, classes = gate_inputs(spec, len(labels))
    schedule = du.ddim_schedule(du.load_scheduler(checkpoint))
    sampler = _Sampler(spec, schedule, latents_for_seeds(seeds.tolist(), spec.image.latent_shape), classes)
    classifier = digit_classifier(spec.image.height, workdir) if spec.image.dataset == "digits" else None
    reference = sampler.pixels(fp32)
    root = Path(workdir) / PRECISION_DIR

    def with_steps_table(record) -> None:
        rows = steps_table(spec, fp32, sampler, classifier)
        write_text_atomic(root / STEPS_FILE, "[" + ",".join(r.model_dump_json() for r in rows) + "]")
        write_text_atomic(root / STEPS_MARKDOWN, steps_markdown(rows))
        record.details.steps_table = rows
        record.artifacts["steps_table"] = (root / STEPS_FILE).resolve()

    return publish_gated_variants(
        manifest, Path(workdir), fp32, wanted, BUILDERS,
        lambda scratch: _Gate(spec, fp32, sampler, reference, classifier, scratch), finish=with_steps_table,
    )  # fmt: skip
