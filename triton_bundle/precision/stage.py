"""The precision stage: FP32 ONNX -> FP16 / INT8 (Q/DQ) / CPU INT8 variants behind accuracy gates.

Each variant is built, run with onnxruntime next to FP32 on the spec's held-out data, and judged
against the spec's budget. An INT8 variant that misses the budget gets sensitivity-guided mixed
precision (the fewest layers kept in float until it passes). Only variants that pass are published
(`<workdir>/precision/<variant>/model.onnx` + gate.json + gate.md, and a manifest artifact); a
rejected variant leaves its report under `<workdir>/precision/<variant>-rejected/`.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from pydantic import BaseModel

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.export.record import ExportRecord
from triton_bundle.export.tasks import get_task, stage_function
from triton_bundle.labels import GoldLabels, map_gold
from triton_bundle.manifest import Manifest, dump_json
from triton_bundle.precision import fp16, int8_dynamic, int8_qdq
from triton_bundle.precision.errors import PrecisionError
from triton_bundle.precision.evaluate import (
    Agreement,
    EvalSet,
    Outputs,
    VariantMetrics,
    agreement_of,
    compare_outputs,
    measure_latency,
    run_outputs,
    scores_gold_labels,
)
from triton_bundle.precision.gate import GateResult, judge
from triton_bundle.precision.layers import group_layers, weight_bytes
from triton_bundle.precision.modalities import PrecisionData, precision_data
from triton_bundle.precision.quant_error import dynamic_layer_sqnr, static_layer_sqnr
from triton_bundle.precision.record import (
    CalibrationInfo,
    Fp32Summary,
    GateSummary,
    PrecisionDetails,
    PrecisionRecord,
)
from triton_bundle.precision.report import VariantReport
from triton_bundle.precision.sensitivity import (
    LayerCost,
    SensitivityReport,
    Trial,
    costs,
    rank_layers,
    search,
)
from triton_bundle.precision.text_inputs import Feeds
from triton_bundle.spec import ModelSpec
from triton_bundle.variants import PRECISION_VARIANTS

PRECISION_DIR = "precision"
MODEL_FILE = "model.onnx"
VARIANTS = PRECISION_VARIANTS
SQNR_EXAMPLES = 64  # held-out examples the one-pass sensitivity ranking looks at


class PrecisionResult(BaseModel):
    """What make_variants did: a report per variant, FP32's numbers, and what was published."""

    reports: dict[str, VariantReport]
    fp32: Fp32Summary
    published: dict[str, Path]
    rejected: dict[str, Path]  # variant -> its report directory


@dataclass
class _Context:
    spec: ModelSpec
    fp32: Path
    input_names: list[str]
    agreement: Agreement
    data: PrecisionData
    eval_set: EvalSet
    reference: Outputs
    scratch: Path

    @property
    def latency_feeds(self) -> dict[str, Feeds]:
        return self.data.latency_feeds

    @property
    def fp32_size_mb(self) -> float:
        return _size_mb(self.fp32)

    def evaluate(self, model: Path) -> tuple[VariantMetrics, GateResult]:
        metrics = compare_outputs(self.reference, run_outputs(model, self.eval_set.batches), self.eval_set)
        return metrics, judge(metrics, self.spec.precision.budget, self.agreement)


@dataclass
class _Built:
    report: VariantReport
    model: Path | None  # None when rejected


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def _subset(batches: Sequence[Feeds], examples: int) -> list[Feeds]:
    out, seen = [], 0
    for feeds in batches:
        if seen >= examples:
            break
        out.append(feeds)
        seen += next(iter(feeds.values())).shape[0]
    return out


# --- mixed precision shared by both INT8 variants -------------------------------------------


def _mixed_precision(
    ctx: _Context,
    name: str,
    build: Callable[[Path, list[str]], None],
    layers: dict[str, list[str]],
    rank: Callable[[Path], dict[str, float]],
) -> tuple[Trial, SensitivityReport | None, list[LayerCost]]:
    """Build with everything quantized; if the gate fails, keep the fewest layers in float."""
    work = ctx.scratch / name
    work.mkdir(parents=True, exist_ok=True)
    counter = itertools.count()

    def trial(float_layers: frozenset[str], keep: bool = False) -> Trial:
        path = work / f"trial-{next(counter)}.onnx"
        build(path, [node for layer in sorted(float_layers) for node in layers[layer]])
        metrics, gate = ctx.evaluate(path)
        if not gate.passed and not keep:
            path.unlink()  # failed candidates are never published; keep the disk free
        return Trial(float_layers, gate, metrics, path if gate.passed or keep else None)

    baseline = trial(frozenset(), keep=True)
    cfg = ctx.spec.precision.sensitivity
    if baseline.gate.passed or not cfg.enabled or len(layers) < 2:
        return baseline, None, []
    assert baseline.model is not None
    sqnr = rank(baseline.model)
    ranking = rank_layers(sqnr, list(layers))
    best, budget = search(ranking, trial, cfg.max_evaluations, baseline=baseline)
    report = SensitivityReport(
        ranking=ranking,
        kept_float=[],
        steps=budget.steps,
        evaluations=len(budget.trials),
        max_evaluations=cfg.max_evaluations,
        passed=best is not None,
        note=""
        if best is not None
        else f"no mix within {cfg.max_evaluations} evaluations passed the gate (keeping all but one "
        "layer in float at most); raise precision.sensitivity.max_evaluations or relax the budget",
    )
    if best is None:
        return baseline, report, []
    kept = costs(best, budget, layers, sqnr, weight_bytes(onnx.load(str(ctx.fp32))))
    report.kept_float = kept
    return best, report, kept


def _int8_report(
    ctx: _Context, variant: str, final: Trial, layers: dict[str, list[str]], **fields: object
) -> VariantReport:
    return VariantReport(
        variant=variant,
        passed=final.gate.passed,
        size_mb=_size_mb(final.model) if final.model else 0.0,
        fp32_size_mb=ctx.fp32_size_mb,
        gate=final.gate,
        metrics=final.metrics,
        quantizable_layers=len(layers),
        **fields,
    )


# --- the variants ---------------------------------------------------------------------------


def _build_fp16(ctx: _Context) -> _Built:
    path = ctx.scratch / "fp16.onnx"
    info = fp16.convert_fp16(ctx.fp32, path, ctx.spec.precision.fp16_keep_fp32_ops)
    metrics, gate = ctx.evaluate(path)
    report = VariantReport(
        variant="fp16",
        passed=gate.passed,
        backend=fp16.CONVERTER,
        tensorrt_compatible=True,
        size_mb=_size_mb(path),
        fp32_size_mb=ctx.fp32_size_mb,
        gate=gate,
        metrics=metrics,
        fp16=info,
        notes=[
            "gated with onnxruntime on CPU, which runs FP16 ops that lack CPU kernels in FP32 between "
            "casts: the gate sees FP16 rounding and overflow, not GPU kernel differences (check the "
            "engine on the GPU)",
        ],
    )
    return _Built(report, path if gate.passed else None)


def _build_int8(ctx: _Context) -> _Built:
    prec = ctx.spec.precision
    cal_cfg = prec.calibration
    settings = int8_qdq.QdqSettings(
        method=cal_cfg.method,
        op_types=None if prec.quantize_all else list(prec.int8_op_types),
        percentile=cal_cfg.percentile,
    )
    calibration = ctx.data.calibrate()
    cache = ctx.scratch / "int8-calibration.json"
    layers = group_layers(ctx.fp32, settings.op_types)
    layer_of_node = {node: layer for layer, nodes in layers.items() for node in nodes}
    sqnr_batches = _subset(ctx.eval_set.batches, SQNR_EXAMPLES)

    def build(dst: Path, excluded: list[str]) -> None:
        int8_qdq.quantize_qdq(ctx.fp32, dst, settings, cache, calibration, excluded)

    def rank(baseline: Path) -> dict[str, float]:
        return static_layer_sqnr(ctx.fp32, baseline, sqnr_batches, layer_of_node)

    final, sensitivity, kept = _mixed_precision(ctx, "int8", build, layers, rank)
    notes = list(calibration.notes)
    if prec.quantize_all:
        # Measured: TensorRT-RTX 1.7 refuses such a graph ("Quantized constant ... is only allowed
        # before DQ", on a GELU scalar); Q/DQ on GEMM inputs only is what TensorRT builds.
        notes.append(
            "quantize_all: Q/DQ on every op onnxruntime can quantize, scalar constants included; "
            "TensorRT does not accept that graph. Use the default int8_op_types for TensorRT"
        )
    notes.append(
        "Q/DQ INT8 is TensorRT's format; on a CPU it is not faster than FP32 (use int8-dynamic there)"
    )
    report = _int8_report(
        ctx,
        "int8",
        final,
        layers,
        backend=int8_qdq.BACKEND,
        tensorrt_compatible=not prec.quantize_all,
        kept_float_layers=kept,
        quantized_layers=len(layers) - len(kept),
        calibration=CalibrationInfo(
            method=calibration.method,
            samples=calibration.samples,
            source=calibration.source,
            notes=calibration.notes,
        ),
        quantization=settings,
        sensitivity=sensitivity,
        notes=notes,
    )
    return _Built(report, final.model if final.gate.passed else None)


def _build_int8_dynamic(ctx: _Context) -> _Built:
    layers = group_layers(ctx.fp32, int8_dynamic.OP_TYPES)
    layer_of_node = {node: layer for layer, nodes in layers.items() for node in nodes}
    sqnr_batches = _subset(ctx.eval_set.batches, SQNR_EXAMPLES)

    def build(dst: Path, excluded: list[str]) -> None:
        int8_dynamic.quantize_dynamic_cpu(ctx.fp32, dst, excluded)

    def rank(_baseline: Path) -> dict[str, float]:
        return dynamic_layer_sqnr(ctx.fp32, sqnr_batches, layer_of_node)

    final, sensitivity, kept = _mixed_precision(ctx, "int8-dynamic", build, layers, rank)
    report = _int8_report(
        ctx,
        "int8-dynamic",
        final,
        layers,
        backend=int8_dynamic.BACKEND,
        tensorrt_compatible=False,
        kept_float_layers=kept,
        quantized_layers=len(layers) - len(kept),
        sensitivity=sensitivity,
        notes=[
            "onnxruntime dynamic quantization: the local / CPU serving variant; NOT a TensorRT format "
            "(TensorRT needs the Q/DQ int8 variant)"
        ],
    )
    return _Built(report, final.model if final.gate.passed else None)


BUILDERS: dict[str, Callable[[_Context], _Built]] = {
    "fp16": _build_fp16,
    "int8": _build_int8,
    "int8-dynamic": _build_int8_dynamic,
}


# --- the stage ------------------------------------------------------------------------------


def _gold(spec: ModelSpec, data: PrecisionData, labels: list[str] | None) -> GoldLabels | None:
    """Gold labels as the model's label names (ids map through id2label); None without names, or for
    tasks gold labels do not score (embeddings, tensors, per-token tags)."""
    if not labels or not scores_gold_labels(spec.task):
        return None
    return map_gold(data.gold, labels, where=str(spec.resolve(spec.data.eval)))


def _check_output_budgets(spec: ModelSpec, output_names: list[str]) -> None:
    unknown = sorted(set(spec.precision.budget.outputs) - set(output_names))
    if unknown:
        raise PrecisionError(
            f"precision.budget.outputs names {unknown}, which '{spec.name}' does not output "
            f"(its outputs: {output_names})"
        )


def _context(spec: ModelSpec, manifest: Manifest, scratch: Path) -> _Context:
    export = manifest.need(ExportRecord)
    details = export.details
    fp32 = export.artifact("onnx")
    input_names, output_names = export.io()
    _check_output_budgets(spec, output_names)
    data = precision_data(spec, export)
    agreement = agreement_of(details.task or spec.task)
    labels = details.labels
    eval_set = EvalSet(data.batches, _gold(spec, data, labels), labels, agreement, output_names=output_names)
    return _Context(
        spec=spec,
        fp32=fp32,
        input_names=input_names,
        agreement=agreement,
        data=data,
        eval_set=eval_set,
        reference=run_outputs(fp32, data.batches),
        scratch=scratch,
    )


def _publish(built: _Built, workdir: Path) -> Path:
    """Write the variant's directory (passed) or its -rejected report directory; return it."""
    report = built.report
    target = workdir / PRECISION_DIR / report.variant
    rejected = workdir / PRECISION_DIR / f"{report.variant}-rejected"
    if built.model is not None:
        report.model = f"{PRECISION_DIR}/{report.variant}/{MODEL_FILE}"  # relative: the workdir may move
        with atomic_path(target, force=True) as tmp:
            tmp.mkdir()
            shutil.move(str(built.model), tmp / MODEL_FILE)
            dump_json(tmp / "gate.json", report)
            (tmp / "gate.md").write_text(report.markdown(), encoding="utf-8")
        shutil.rmtree(rejected, ignore_errors=True)
        return target
    with atomic_path(rejected, force=True) as tmp:
        tmp.mkdir()
        dump_json(tmp / "gate.json", report)
        (tmp / "gate.md").write_text(report.markdown(), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)  # an older pass must not stay published
    return rejected


def _record(
    manifest: Manifest, reports: dict[str, VariantReport], published: dict[str, Path], fp32: Fp32Summary
) -> PrecisionRecord:
    """The "precision" record; variants not re-run this time keep their earlier entries."""
    previous = manifest.get(PrecisionRecord)
    artifacts: dict[str, Path] = {}
    gates: dict[str, GateSummary] = {}
    if previous is not None:
        for variant, path in previous.artifacts.items():
            if variant not in reports and Path(path).is_file():
                artifacts[variant] = path
        gates = {k: v for k, v in previous.details.gates.items() if k not in reports}
    for variant, path in published.items():
        artifacts[variant] = (path / MODEL_FILE).resolve()
    metrics: dict[str, float] = {"fp32.size_mb": fp32.size_mb}
    if fp32.accuracy is not None:
        metrics["fp32.accuracy"] = fp32.accuracy
    for variant, report in reports.items():
        gates[variant] = report.summary()
        metrics[f"{variant}.{report.gate.metric}"] = report.gate.value
        metrics[f"{variant}.passed"] = float(report.passed)
        metrics[f"{variant}.size_mb"] = report.size_mb
        if report.metrics.accuracy is not None:
            metrics[f"{variant}.accuracy"] = report.metrics.accuracy
        for key, ms in report.latency_ms.items():
            metrics[f"{variant}.latency_ms.{key}"] = ms
    for key, ms in fp32.latency_ms.items():
        metrics[f"fp32.latency_ms.{key}"] = ms
    return PrecisionRecord(
        artifacts=artifacts,
        metrics=metrics,
        details=PrecisionDetails(gates=gates, fp32=fp32),
        passed=all(g.passed for g in gates.values()),
    )


def _fp32_summary(ctx: _Context, latency: bool) -> Fp32Summary:
    """FP32's own numbers: the reference row of the precision table."""
    reference = compare_outputs(ctx.reference, ctx.reference, ctx.eval_set)
    return Fp32Summary(
        onnx=str(ctx.fp32),
        size_mb=ctx.fp32_size_mb,
        accuracy=reference.accuracy_fp32,
        macro_f1=reference.macro_f1_fp32,
        latency_ms={k: measure_latency(ctx.fp32, f) for k, f in ctx.latency_feeds.items()} if latency else {},
    )


def make_variants(
    spec: ModelSpec,
    workdir: Path,
    variants: Sequence[str] | None = None,
    force: bool = False,
    latency: bool = False,
) -> PrecisionResult:
    """Build, gate and publish the spec's precision variants (or `variants`); record them."""
    workdir = Path(workdir)
    wanted = list(variants or spec.precision.variants)
    unknown = [v for v in wanted if v not in BUILDERS]
    if unknown:
        raise PrecisionError(f"unknown precision variant(s) {unknown}; expected some of {list(BUILDERS)}")
    for variant in wanted:
        check_overwrite(workdir / PRECISION_DIR / variant, force)
    task = get_task(spec.task)
    if task.precision_stage:  # a decoder, a generator, a diffusion UNet: gated on what they generate
        return stage_function(task.precision_stage)(spec, workdir, wanted)
    manifest = Manifest.load(workdir, spec.name)
    (workdir / PRECISION_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".work-", dir=workdir / PRECISION_DIR) as scratch:
        ctx = _context(spec, manifest, Path(scratch))
        fp32 = _fp32_summary(ctx, latency)
        reports: dict[str, VariantReport] = {}
        published: dict[str, Path] = {}
        rejected: dict[str, Path] = {}
        for variant in wanted:
            built = BUILDERS[variant](ctx)
            if latency and built.model is not None:
                built.report.latency_ms = {
                    k: measure_latency(built.model, f) for k, f in ctx.latency_feeds.items()
                }
            where = _publish(built, workdir)
            reports[variant] = built.report
            (published if built.report.passed else rejected)[variant] = where
    manifest.record(_record(manifest, reports, published, fp32))
    manifest.save(workdir)
    return PrecisionResult(reports=reports, fp32=fp32, published=published, rejected=rejected)
