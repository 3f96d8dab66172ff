"""`triton-bundle precision`: build FP16 / INT8 / CPU INT8 variants and gate them against FP32."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from triton_bundle.cli_common import (
    ForceOpt,
    SpecArg,
    WorkdirOpt,
    console,
    open_spec,
    print_path,
    titled_table,
)
from triton_bundle.overrides import with_section_overrides

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
    spec = with_section_overrides(spec, "precision", quantize_all=quantize_all or None)
    with console.status("building and gating precision variants on the held-out data"):
        result = make_variants(spec, workdir, variants=variant, force=force, latency=latency)

    print_precision(result, spec.name)
    if result.rejected:
        raise typer.Exit(code=1)


def _table(result: PrecisionResult, name: str) -> Table:
    """One row per variant; the gate's metric and budget go in the title so names stay whole at 80."""
    gates = {
        (r.gate.metric, r.gate.checks[0].higher_is_better, r.gate.budget) for r in result.reports.values()
    }
    shared = next(iter(gates)) if len(gates) == 1 else None
    budget = f"; gate: {shared[0]} {'>=' if shared[1] else '<='} {shared[2]:g}" if shared else ""
    table = titled_table(
        f"Precision variants of '{name}' vs FP32 ({_examples(result)} held-out examples{budget})"
    )
    table.add_column("variant", no_wrap=True)
    table.add_column("vs FP32" if shared else "gate metric vs FP32", no_wrap=True)
    for column in ("accuracy", "passed", "size MB", "kept in float"):
        table.add_column(column, no_wrap=True)
    fp32 = result.fp32
    table.add_row("fp32", "-", _fmt(fp32.accuracy), "-", f"{fp32.size_mb:.1f}", "-")
    for variant, report in result.reports.items():
        gate = report.gate
        kept = (
            f"{len(report.kept_float_layers)} of {report.quantizable_layers}"
            if report.quantizable_layers is not None
            else "-"
        )
        table.add_row(
            variant,
            f"{gate.value:.4f}" if shared else f"{gate.metric} {gate.value:.4f}",
            _fmt(report.metrics.accuracy),
            "[green]yes" if report.passed else "[red]NO",
            f"{report.size_mb:.1f}",
            kept,
        )
    return table


def print_precision(result: PrecisionResult, name: str, out: Console | None = None) -> None:
    """The variants table, the layers kept in float, and where each report went."""
    out = out or console
    out.print(_table(result, name))
    for variant, report in result.reports.items():
        for layer in report.kept_float_layers:
            cost = (
                ""
                if layer.metric_if_quantized is None
                else f" ({report.gate.metric} {layer.metric_if_quantized:.4f} if quantized)"
            )
            out.print(f"  {variant}: kept in float [bold]{escape(layer.layer)}[/]{cost}", soft_wrap=True)
    latencies = [("fp32", result.fp32.latency_ms)] + [(n, r.latency_ms) for n, r in result.reports.items()]
    for variant, ms in latencies:
        if ms:
            out.print(f"latency {variant}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
    for variant, where in result.published.items():
        print_path(f"[green]published[/] {variant}:", where, out)
    for variant, where in result.rejected.items():
        failures = "; ".join(result.reports[variant].gate.failures())
        out.print(f"[red]rejected[/] {variant}: {escape(failures)}")
        print_path("  report:", where / "gate.md", out)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _examples(result: PrecisionResult) -> int:
    return next(iter(result.reports.values())).metrics.examples if result.reports else 0
