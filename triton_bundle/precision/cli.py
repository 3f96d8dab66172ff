"""`triton-bundle precision`: build FP16 / INT8 / CPU INT8 variants and gate them against FP32."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from triton_bundle.cli_common import ForceOpt, SpecArg, WorkdirOpt, console, open_spec

if TYPE_CHECKING:
    from triton_bundle.precision.stage import PrecisionResult

VariantOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--variant", "-v", help="fp16, int8 or int8-dynamic (repeatable) [default: the spec's list]"
    ),
]
QuantizeAllOpt = Annotated[
    bool,
    typer.Option(
        "--quantize-all",
        help="INT8: Q/DQ on every op onnxruntime can quantize (a known-bad setting the gate must catch)",
    ),
]
LatencyOpt = Annotated[bool, typer.Option("--latency", help="also time onnxruntime at batch 1 and 8")]


def precision_command(
    spec_path: SpecArg,
    variant: VariantOpt = None,
    quantize_all: QuantizeAllOpt = False,
    latency: LatencyOpt = False,
    workdir: WorkdirOpt = None,
    force: ForceOpt = False,
) -> None:
    """Make FP16 / INT8 variants and publish only those within the spec's accuracy budget."""
    from triton_bundle.precision.stage import make_variants

    spec, workdir = open_spec(spec_path, workdir)
    if quantize_all:
        spec.precision.quantize_all = True
    with console.status("building and gating precision variants on the held-out data"):
        result = make_variants(spec, workdir, variants=variant, force=force, latency=latency)

    table = Table(
        title=f"Precision variants of '{spec.name}' vs FP32 ({_examples(result)} held-out examples)"
    )
    for column in (
        "variant",
        "metric vs FP32",
        "accuracy (labels)",
        "budget",
        "passed",
        "size MB",
        "kept in float",
    ):
        table.add_column(column)
    fp32 = result.fp32
    table.add_row("fp32", "-", _fmt(fp32.accuracy), "-", "-", f"{fp32.size_mb:.1f}", "-")
    for name, report in result.reports.items():
        gate, metrics = report.gate, report.metrics
        kept = (
            f"{len(report.kept_float_layers)} of {report.quantizable_layers}"
            if report.quantizable_layers is not None
            else "-"
        )
        table.add_row(
            name,
            f"{gate.metric} {gate.value:.4f}",
            _fmt(metrics.accuracy),
            f"{'>=' if gate.checks[0].higher_is_better else '<='} {gate.budget:g}",
            "[green]yes" if report.passed else "[red]NO",
            f"{report.size_mb:.1f}",
            kept,
        )
    console.print(table)
    for name, report in result.reports.items():
        for layer in report.kept_float_layers:
            cost = (
                ""
                if layer.metric_if_quantized is None
                else f" ({report.gate.metric} {layer.metric_if_quantized:.4f} if quantized)"
            )
            console.print(f"  {name}: kept in float [bold]{layer.layer}[/]{cost}")
    if latency:
        for name, ms in [("fp32", fp32.latency_ms)] + [(n, r.latency_ms) for n, r in result.reports.items()]:
            if ms:
                console.print(f"latency {name}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
    for name, where in result.published.items():
        console.print(f"[green]published[/] {name}: {where}")
    for name, where in result.rejected.items():
        failures = "; ".join(result.reports[name].gate.failures())
        console.print(f"[red]rejected[/] {name}: {failures} (report: {where / 'gate.md'})")
    if result.rejected:
        raise typer.Exit(code=1)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _examples(result: PrecisionResult) -> int:
    return next(iter(result.reports.values())).metrics.examples if result.reports else 0
