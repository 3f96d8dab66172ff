"""The run's outputs: benchmark.json (every row), benchmark.md (tables, targets, plots), plots/*.png and
a console table."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from matplotlib.ticker import ScalarFormatter
from rich.console import Console
from rich.table import Table

from benchmarks.results import BenchmarkReport, Row, Section
from benchmarks.targets import request_split
from triton_bundle.atomic import write_text_atomic
from triton_bundle.plotting import fit_axis

SECTION_TITLES: dict[Section, str] = {
    "baseline": "Baseline: PyTorch eager behind Flask + gunicorn (HTTP, closed loop)",
    "ort": "onnxruntime in-process (model only, latency per batch)",
    "served": "Local Triton through the ensemble (HTTP, closed loop)",
    "gpu": "GPU: PyTorch eager FP16 vs TensorRT",
}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cells(row: Row) -> list[str]:
    acc = row.accuracy
    return [
        row.name,
        str(row.batch_size or "-"),
        row.sequence or "-",
        str(row.concurrency or "-"),
        _fmt(row.throughput),
        _fmt(row.latency.p50_ms, 2),
        _fmt(row.latency.p95_ms, 2),
        _fmt(row.latency.p99_ms, 2),
        "-" if acc is None else f"{acc.agreement_with_fp32:.3f}",
        "-" if acc is None or acc.accuracy is None else f"{acc.accuracy:.3f}",
        "-"
        if row.limit is None
        else f"{row.limit.fraction_of_limit:.0%} of {row.limit.max_sequences_per_s:.0f}",
        _split(row),
    ]


def _split(row: Row) -> str:
    split = request_split(row)
    return "-" if split is None else " / ".join(f"{v:.2f}" for v in split)


# The floors' concurrencies (1 and 8 clients) and the batching target's (16).
HEADLINE_CONCURRENCIES = (1, 8, 16)

HEADERS = [
    "row",
    "batch",
    "seq",
    "conc.",
    "seq/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "agree fp32",
    "accuracy",
    "vs limit (seq/s)",
    "queue / compute / hops ms",
]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def summary_rows(report: BenchmarkReport) -> list[Row]:
    """The headline rows for a README: each served path at 1, 8 and 16 clients and at its peak, and
    the fastest real-mix in-process row of each variant."""
    rows: list[Row] = []
    served: tuple[Section, ...] = ("baseline", "served")
    for section in served:
        by_name: dict[str, list[Row]] = defaultdict(list)
        for row in report.section(section):
            by_name[row.name].append(row)
        for named in by_name.values():
            peak = max(named, key=lambda r: r.throughput)
            rows += [r for r in named if r.concurrency in HEADLINE_CONCURRENCIES or r is peak]
    best: dict[str, Row] = {}
    for row in report.section("ort"):
        if row.sequence == "real mix" and (
            row.variant not in best or row.throughput > best[row.variant].throughput
        ):
            best[row.variant] = row
    return rows + list(best.values()) + report.section("gpu")


def _machine(report: BenchmarkReport) -> str:
    m = report.machine
    parts = []
    for kind, unit in (("fp32", "GFLOP/s"), ("int8", "GOP/s")):
        runs = [r for r in m.matmul if r.kind == kind]
        if runs:
            seen = " / ".join(f"{r.best_gops:.0f}" for r in runs)
            parts.append(f"{kind} {max(r.best_gops for r in runs):.0f} {unit} (start / end: {seen})")
    rates = ", ".join(parts) or "matmul not measured"
    after = "-" if m.load_average_after is None else " / ".join(f"{v:.1f}" for v in m.load_average_after)
    return (
        f"{m.cpu_model}, {m.cores} cores ({rates} measured, {m.matmul[0].size if m.matmul else 2048}^3 matmul); "
        f"load average before {' / '.join(f'{v:.1f}' for v in m.load_average_before)}, after {after}; "
        f"Python {m.python}, onnxruntime {m.onnxruntime}, torch {m.torch}, Triton {m.triton or '-'}"
        + (f", GPU {m.gpu}" if m.gpu else "")
    )


def _where_time_goes(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        if row.cpu is None:
            continue
        cpu = ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(row.cpu.per_request_ms.items(), key=lambda kv: -kv[1])
        )
        stages = "; ".join(
            f"{s.model} q {_fmt(s.queue_ms, 2)} + c {_fmt(s.compute_ms, 2)} ms"
            + (f" (batch {s.avg_batch_size:.1f})" if s.avg_batch_size else "")
            for s in row.stages
        )
        lines.append(
            f"| {row.name} | {row.concurrency} | {_fmt(row.throughput)} | {row.cpu.cpu_utilisation:.2f} | {cpu} | {stages or '-'} |"
        )
    if not lines:
        return []
    return [
        "| row | conc. | req/s | cores busy | CPU ms per request (by process) | Triton queue + compute per step |",
        "|---|---|---|---|---|---|",
        *lines,
    ]


def write_markdown(report: BenchmarkReport, path: Path, plots: list[Path]) -> Path:
    out = [
        f"# Benchmark: {report.model} ({report.mode})",
        "",
        f"Run {report.started_at}, {report.wall_s:.0f} s wall. Machine: {_machine(report)}.",
        "",
        "Every row uses the held-out data: throughput in sequences/s, latency per request (served) or per",
        "batch (in-process), label agreement with FP32 onnxruntime and accuracy against the gold labels.",
        "'vs limit' is the measured throughput over the matmul roofline (model matmul FLOPs per sequence",
        "over this box's measured matmul throughput).",
        "",
        "## Targets",
        "",
        "| target | result | measured | required |",
        "|---|---|---|---|",
    ]
    for t in report.targets:
        verdict = "n/a" if t.passed is None else ("PASS" if t.passed else "FAIL")
        out.append(f"| {t.name} | {verdict} | {t.measured} | {t.required} |")
    for t in report.targets:
        if t.where_time_goes:
            out += ["", f"Where the time goes ({t.name}):", ""] + [f"- {line}" for line in t.where_time_goes]
    for section, title in SECTION_TITLES.items():
        rows = report.section(section)
        if not rows:
            continue
        out += ["", f"## {title}", "", markdown_table(rows)]
        if section in ("baseline", "served"):
            table = _where_time_goes(rows)
            if table:
                out += ["", "Where the time goes:", "", *table]
    if report.skipped:
        out += ["", "## Skipped", ""] + [f"- {s.section}: {s.reason}" for s in report.skipped]
    if report.inputs:
        out += ["", "## Inputs", ""] + [f"- {k}: {v}" for k, v in report.inputs.items()]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    if plots:
        out += ["", "## Plots", ""] + [f"![{p.stem}]({p.relative_to(path.parent).as_posix()})" for p in plots]
    return write_text_atomic(path, "\n".join(out) + "\n")


def write_summary(report: BenchmarkReport, path: Path) -> Path:
    """The headline table with the machine it came from: what the README shows."""
    lines = [
        f"Latest run ({report.mode}, {report.started_at}, {report.wall_s:.0f} s): {_machine(report)}.",
        "",
        markdown_table(summary_rows(report)),
        "",
    ]
    for t in report.targets:
        verdict = "n/a" if t.passed is None else ("PASS" if t.passed else "FAIL")
        lines.append(f"- {verdict} {t.name}: {t.measured} (required {t.required})")
    return write_text_atomic(path, "\n".join(lines) + "\n")


def write_plots(report: BenchmarkReport, directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    served = [*report.section("baseline"), *report.section("served")]
    if served:
        written.append(_served_plot(served, directory, plt))
    if report.section("ort"):
        written.append(_ort_plot(report.section("ort"), directory, plt))
    with_cpu = [r for r in served if r.cpu is not None]
    if with_cpu:
        written.append(_cpu_plot(with_cpu, directory, plt))
    return written


def _served_plot(served: list[Row], directory: Path, plt) -> Path:
    """Throughput per concurrency, and p95 against throughput, one line per configuration."""
    by_name: dict[str, list[Row]] = defaultdict(list)
    for row in served:
        by_name[row.name].append(row)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for name, rows in by_name.items():
        rows = sorted(rows, key=lambda r: r.concurrency or 0)
        style = "--" if rows[0].section == "baseline" else "-"
        left.plot([r.concurrency for r in rows], [r.throughput for r in rows], style, marker="o", label=name)
        right.plot(
            [r.throughput for r in rows], [r.latency.p95_ms for r in rows], style, marker="o", label=name
        )
        for r in rows:  # the line joins concurrency levels in order: say which point is which
            right.annotate(
                f"c{r.concurrency}", (r.throughput, r.latency.p95_ms), fontsize=6, alpha=0.7,
                xytext=(3, 3), textcoords="offset points",
            )  # fmt: skip
    left.set(
        xlabel="concurrency (closed loop)",
        ylabel="requests / s",
        title="Throughput",
        xscale="log",
        xticks=sorted({r.concurrency or 1 for r in served}),
    )
    left.get_xaxis().set_major_formatter(ScalarFormatter())
    fit_axis(left, [r.throughput for r in served])  # from zero: a cut axis exaggerates the gaps
    right.set(
        xlabel="requests / s", ylabel="p95 latency (ms)", title="p95 latency vs throughput", yscale="log"
    )
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, directory / "served_throughput_latency.png", plt)


def _ort_plot(ort: list[Row], directory: Path, plt) -> Path:
    """In-process onnxruntime throughput per variant and batch, one panel per sequence length."""
    sequences = sorted({r.sequence or "" for r in ort})
    variants = list(dict.fromkeys(r.variant for r in ort))
    batches = sorted({r.batch_size or 1 for r in ort})
    fig, axes = plt.subplots(1, len(sequences), figsize=(6 * len(sequences), 4.5), squeeze=False)
    width = 0.8 / max(1, len(variants))
    for ax, sequence in zip(axes[0], sequences, strict=True):
        for i, variant in enumerate(variants):
            values = [
                next(
                    (
                        r.throughput
                        for r in ort
                        if r.variant == variant and r.batch_size == b and r.sequence == sequence
                    ),
                    None,
                )
                for b in batches
            ]
            xs = [x + i * width for x in range(len(batches))]
            ax.bar(xs, [math.nan if v is None else v for v in values], width, label=variant)
            for x, v in zip(xs, values, strict=True):
                if v is None:  # a row that was not run is not a zero throughput
                    ax.text(x, 0, "not run", rotation=90, ha="center", va="bottom", fontsize=7, color="grey")
        ax.set_xticks(
            [x + width * (len(variants) - 1) / 2 for x in range(len(batches))],
            [f"batch {b}" for b in batches],
        )
        # Every batch group in view, also one whose bars are all missing (NaN bars do not autoscale).
        ax.set_xlim(-width / 2 - 0.1, len(batches) - 1 + width * (len(variants) - 0.5) + 0.1)
        ax.set(ylabel="sequences / s", title=f"onnxruntime in-process, sequence {sequence}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, directory / "ort_variants.png", plt)


def _cpu_plot(with_cpu: list[Row], directory: Path, plt) -> Path:
    """CPU milliseconds per request by process, at the highest concurrency measured."""
    top = max(r.concurrency or 0 for r in with_cpu)
    rows = [r for r in with_cpu if r.concurrency == top]
    labels = sorted({k for r in rows for k in r.cpu.per_request_ms})  # type: ignore[union-attr]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 2))
    left = [0.0] * len(rows)
    for label in labels:
        values = [r.cpu.per_request_ms.get(label, 0.0) for r in rows]  # type: ignore[union-attr]
        ax.barh([r.name for r in rows], values, left=left, label=label)
        left = [a + b for a, b in zip(left, values, strict=True)]
    fit_axis(ax, left, axis="x")  # zero-width segments' sticky edges would end the axis flush on a bar
    ax.set(xlabel="CPU ms per request", title=f"Where the CPU goes at concurrency {top}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return _save(fig, directory / "cpu_per_request.png", plt)


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(report: BenchmarkReport, console: Console) -> None:
    table = Table(title=f"{report.model}: benchmark ({report.mode}, {report.wall_s:.0f} s)")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("row", "seq") else "right")
    for row in summary_rows(report):
        table.add_row(*_cells(row))
    console.print(table)
    for t in report.targets:
        verdict = "[yellow]n/a" if t.passed is None else ("[green]PASS" if t.passed else "[red]FAIL")
        console.print(f"{verdict}[/] {t.name}: {t.measured} (required {t.required})")


def write_all(report: BenchmarkReport, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_text_atomic(out_dir / "benchmark.json", report.model_dump_json(indent=2))
    plots = write_plots(report, out_dir / "plots")
    md_path = write_markdown(report, out_dir / "benchmark.md", plots)
    summary = write_summary(report, out_dir / "summary.md")
    return {"json": json_path, "markdown": md_path, "summary": summary, **{p.stem: p for p in plots}}
