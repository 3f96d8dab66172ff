"""The image gate both generator families share: ImageQuality vs FP32 -> GateResult -> VariantReport.

The GAN generator (imagegen.variants) and the diffusion UNet (diffusion.variants) make their variant's
images differently (one forward pass vs the served DDIM loop), but judge them the same way: mean PSNR,
mean SSIM and digit-classifier agreement against precision.budget, reported as the precision stage's
VariantReport so gate.json / gate.md / the manifest read alike for every task.
"""

from __future__ import annotations

from pathlib import Path

from triton_bundle.imagegen.metrics import ImageQuality
from triton_bundle.precision.evaluate import VariantMetrics
from triton_bundle.precision.gate import GateResult, _check
from triton_bundle.precision.report import VariantReport
from triton_bundle.spec import AccuracyBudget

PSNR_CAP = 1e9  # identical images have infinite PSNR; JSON and margins need a finite number


def judge_images(quality: ImageQuality, budget: AccuracyBudget) -> GateResult:
    checks = [
        _check("psnr_db", min(quality.psnr_db, PSNR_CAP), budget.min_psnr_db, True),
        _check("ssim", quality.ssim, budget.min_ssim, True),
    ]
    if quality.class_agreement is not None:
        checks.append(_check("class_agreement", quality.class_agreement, budget.min_class_agreement, True))
    primary = checks[0]
    return GateResult(metric="psnr_db", value=primary.value, budget=primary.limit, passed=all(c.passed for c in checks),
                      margin=min(c.margin for c in checks), checks=checks)  # fmt: skip


def image_variant_report(
    variant: str,
    path: Path,
    fp32: Path,
    quality: ImageQuality,
    budget: AccuracyBudget,
    compared: str,
    **fields,
) -> tuple[VariantReport, Path | None]:
    """The variant's report and its model (None when rejected); `compared` says which images were compared
    ("20 images at image.gate_seeds"), the first note; a rejection adds a note naming the failed checks."""
    gate = judge_images(quality, budget)
    metrics = VariantMetrics(examples=quality.images, psnr_db=min(quality.psnr_db, PSNR_CAP), max_abs=0.0,
                             label_agreement=quality.class_agreement)  # fmt: skip
    agreement = (
        ""
        if quality.class_agreement is None
        else f", digit classifier agreement {quality.class_agreement:.2%}"
    )
    notes = [
        f"{compared} vs FP32: PSNR {quality.psnr_db:.1f} dB (worst {quality.min_psnr_db:.1f}), "
        f"SSIM {quality.ssim:.4f}{agreement}",
        *fields.pop("notes", []),
    ]
    if not gate.passed:
        failed = [f"{c.name} {c.value:.4g} below {c.limit:g}" for c in gate.checks if not c.passed]
        notes.append("rejected: " + "; ".join(failed))
    report = VariantReport(variant=variant, passed=gate.passed, size_mb=path.stat().st_size / 1e6,
                           fp32_size_mb=fp32.stat().st_size / 1e6, gate=gate, metrics=metrics, notes=notes,
                           **fields)  # fmt: skip
    return report, path if gate.passed else None
