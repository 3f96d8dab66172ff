"""What the task-specific variant paths share (KV-cache decoder, image generator, diffusion UNet).

Each path judges its variants its own way (next-token agreement, images at the gate seeds, sampled
images) through a context whose `report(variant, path, **fields)` returns (VariantReport, model or None);
building the FP16 and CPU INT8 graphs, publishing the verdicts and recording the stage are the same.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from triton_bundle.manifest import Manifest
from triton_bundle.precision import fp16, int8_dynamic
from triton_bundle.precision.record import PrecisionRecord
from triton_bundle.precision.report import VariantReport
from triton_bundle.precision.stage import (
    PRECISION_DIR,
    Fp32Summary,
    PrecisionResult,
    _Built,
    _publish,
    _record,
    _size_mb,
)
from triton_bundle.spec import ModelSpec


class GateContext(Protocol):
    spec: ModelSpec
    fp32: Path
    scratch: Path

    def report(self, variant: str, path: Path, **fields: Any) -> tuple[VariantReport, Path | None]: ...


VariantBuilder = Callable[[Any], tuple[VariantReport, Path | None]]


def fp16_variant(ctx: GateContext) -> tuple[VariantReport, Path | None]:
    path = ctx.scratch / "fp16.onnx"
    info = fp16.convert_fp16(ctx.fp32, path, ctx.spec.precision.fp16_keep_fp32_ops)
    return ctx.report("fp16", path, backend=fp16.CONVERTER, tensorrt_compatible=True, fp16=info)


def int8_dynamic_variant(ctx: GateContext, notes: Sequence[str] = ()) -> tuple[VariantReport, Path | None]:
    path = ctx.scratch / "int8-dynamic.onnx"
    int8_dynamic.quantize_dynamic_cpu(ctx.fp32, path)
    return ctx.report(
        "int8-dynamic", path, backend=int8_dynamic.BACKEND, tensorrt_compatible=False, notes=list(notes)
    )


def publish_gated_variants(
    manifest: Manifest,
    workdir: Path,
    fp32: Path,
    wanted: Sequence[str],
    builders: dict[str, VariantBuilder],
    context: Callable[[Path], Any],
    finish: Callable[[PrecisionRecord], None] | None = None,
) -> PrecisionResult:
    """The task-specific variant paths (decoder, generator, UNet): build each wanted variant with
    `builders[variant](context(scratch))`, publish or reject it, and record the precision stage.
    `finish` may add task details to the record before it is saved (e.g. diffusion's steps table)."""
    reports: dict[str, VariantReport] = {}
    published: dict[str, Path] = {}
    rejected: dict[str, Path] = {}
    (workdir / PRECISION_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".work-", dir=workdir / PRECISION_DIR) as scratch:
        ctx = context(Path(scratch))
        for variant in wanted:
            report, model = builders[variant](ctx)
            where = _publish(_Built(report, model), workdir)
            reports[variant] = report
            (published if report.passed else rejected)[variant] = where
    summary = Fp32Summary(onnx=str(fp32), size_mb=_size_mb(fp32))
    record = _record(manifest, reports, published, summary)
    if finish is not None:
        finish(record)
    manifest.record(record)
    manifest.save(workdir)
    return PrecisionResult(reports=reports, fp32=summary, published=published, rejected=rejected)
