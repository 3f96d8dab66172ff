"""Terminal tables for load-test, capacity and compare results (rich), shared by the CLI and the demo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from triton_bundle.formatting import ms, number, percent
from triton_bundle.render import print_path

if TYPE_CHECKING:  # the results' modules import matplotlib and Locust helpers: not for `--help`
    from triton_bundle.loadtest.capacity import CapacityResult
    from triton_bundle.loadtest.compare import CompareResult
    from triton_bundle.loadtest.generation import GenerationSummary
    from triton_bundle.loadtest.runner import LoadtestResult

console = Console()


def print_result(result: LoadtestResult, out: Console | None = None) -> None:
    """Client numbers, the SLO gate, Triton's own statistics (key / value, so they fit 80 columns)."""
    out = out or console
    c = result.client
    table = Table(title=f"{result.settings.model} over {result.settings.endpoint.protocol} ({c.stop_reason})")
    for column in ("requests", "failures", "req/s", "items/s", "p50", "p95", "p99"):
        table.add_column(column, justify="right")
    table.add_row(
        str(c.requests),
        str(c.failures),
        f"{c.rps:.1f}",
        f"{c.items_per_s:.1f}",
        ms(c.latency.p50_ms),
        ms(c.latency.p95_ms),
        ms(c.latency.p99_ms),
    )
    out.print(table)
    if c.generation is not None:
        _print_generation(c.generation, out)
    out.print(_gate_table(result))
    out.print(_server_table(result))
    for line in result.server.scrape_errors[:3]:
        out.print(f"[yellow]server sampling: {line}[/]")
    for e in c.errors[:3]:
        out.print(f"[red]{e.occurrences} x {e.error[:200]}[/]")
    for key in ("summary_md", "report_json", "locust_html", "timeline_png", "generation_png"):
        if key in result.artifacts:
            print_path(f"{key}:", result.artifacts[key], out)
    if result.passed:
        out.print("[bold green]all SLOs met[/]")
    else:
        for check in result.gate.failed:
            out.print(f"[bold red]{check.explain()}[/]")


def _gate_table(result: LoadtestResult) -> Table:
    gate = Table(title="SLO gate")
    for column in ("SLO", "threshold", "measured", "margin", "result"):
        gate.add_column(column, justify="left" if column == "SLO" else "right")
    for check in result.gate.checks:
        gate.add_row(
            check.description,
            f"{'<=' if check.bound == 'max' else '>='} {check.threshold:g} {check.unit}",
            "n/a" if check.measured is None else f"{check.measured:.4g} {check.unit}",
            "n/a" if check.margin is None else f"{check.margin:+.4g} {check.unit}",
            "[green]pass[/]" if check.passed else "[bold red]FAIL[/]",
        )
    return gate


def _server_table(result: LoadtestResult) -> Table:
    s = result.server
    server = Table(title="server (Triton statistics)", show_header=False)
    server.add_column("statistic", no_wrap=True)
    server.add_column("value", overflow="fold")
    for name, value in (
        ("queue / request", ms(s.queue_ms)),
        ("compute / request", ms(s.compute_ms)),
        ("queue share", percent(s.queue_share)),
        ("avg batch", number(s.avg_batch_size)),
        ("busiest model", s.bottleneck_model or "n/a"),
        ("CPU utilisation", percent(s.cpu_utilization_avg)),
    ):
        server.add_row(name, value)
    return server


def _print_generation(gen: GenerationSummary, out: Console) -> None:
    table = Table(title="streamed generation")
    for column in ("streams", "tokens", "tokens/s", "per stream", "TTFT p50/95/99", "ITL p50/95/99"):
        table.add_column(column, justify="right")
    trio = lambda p: " / ".join("-" if v is None else f"{v:g}" for v in (p.p50_ms, p.p95_ms, p.p99_ms))  # noqa: E731
    table.add_row(
        str(gen.streams),
        str(gen.tokens),
        number(gen.tokens_per_s),
        number(gen.stream_tokens_per_s_p50),
        f"{trio(gen.ttft)} ms",
        f"{trio(gen.itl)} ms",
    )
    out.print(table)


def capacity_table(result: CapacityResult, mode: str) -> Table:
    """One row per level tried: pass / FAIL, rate, latencies, why it failed."""
    table = Table(title=f"capacity search ({mode}): {result.note}")
    for column in ("level", "result", "req/s", "p50", "p95", "p99", "why"):
        table.add_column(column, justify="left" if column == "why" else "right")
    for step in result.steps:
        table.add_row(
            f"{step.level:g}",
            "[green]pass[/]" if step.passed else "[red]FAIL[/]",
            f"{step.rps:.1f}",
            ms(step.p50_ms, 0),
            ms(step.p95_ms, 0),
            ms(step.p99_ms, 0),
            "; ".join(step.reasons)[:120],
        )
    return table


def compare_table(result: CompareResult, concurrency: int) -> Table:
    """Locust and perf_analyzer side by side at the same concurrency and batch size."""
    table = Table(
        title=f"{result.model} over {result.protocol}: concurrency {concurrency}, batch {result.batch_size}"
    )
    for column in ("tool", "requests", "req/s", "infer/s", "p50", "p95", "p99"):
        table.add_column(column, justify="left" if column == "tool" else "right")
    for row in result.rows:
        table.add_row(
            row.tool,
            str(row.requests),
            f"{row.rps:.1f}",
            f"{row.infer_per_s:.1f}",
            ms(row.p50_ms, 2),
            ms(row.p95_ms, 2),
            ms(row.p99_ms, 2),
        )
    return table
