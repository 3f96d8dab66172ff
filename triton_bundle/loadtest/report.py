"""The run's report: JSON (everything), a markdown summary, and PNG plots; Locust's CSV / HTML sit beside them.

Plots: throughput and p50 / p95 / p99 over time, the latency histogram, and where server time goes
(queue vs compute per model, and over time).
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel

from triton_bundle.atomic import atomic_path, write_text_atomic
from triton_bundle.formatting import ms as _ms
from triton_bundle.formatting import percent as _pct
from triton_bundle.loadtest.generation_report import generation_markdown, plot_generation
from triton_bundle.loadtest.incidents import Incident, find_incidents, what_happened
from triton_bundle.loadtest.results import TimelinePoint, percentile, timeline_points
from triton_bundle.loadtest.runner import LoadtestResult
from triton_bundle.plotting import Reference, draw_references, fit_axis

_DPI = 110


class LoadtestReport(BaseModel):
    """What report.json holds: the verdict, the full result and the per-second timeline."""

    passed: bool
    failed_slos: list[str]
    result: LoadtestResult
    timeline: list[TimelinePoint]
    incidents: list[Incident] = []


def write_report(result: LoadtestResult, out_dir: Path) -> dict[str, Path]:
    """Write report.json, summary.md and the plots into out_dir; returns every artifact by key."""
    out_dir.mkdir(parents=True, exist_ok=True)
    points = timeline_points(result.client.timeline, result.client.started_at)
    artifacts = dict(result.artifacts)
    artifacts["timeline_png"] = plot_timeline(result, points, out_dir / "timeline.png")
    artifacts["latency_histogram_png"] = plot_latency_histogram(result, out_dir / "latency_histogram.png")
    artifacts["server_split_png"] = plot_server_split(result, out_dir / "server_split.png")
    if result.client.generation is not None:
        figure = plot_generation(result.client.generation, result.gate, result.client.started_at)
        artifacts["generation_png"] = _save(figure, out_dir / "generation.png")
    artifacts["summary_md"] = out_dir / "summary.md"
    artifacts["report_json"] = out_dir / "report.json"
    result = result.model_copy(update={"artifacts": artifacts})
    write_text_atomic(artifacts["summary_md"], markdown_summary(result, out_dir))
    report = LoadtestReport(
        passed=result.passed,
        failed_slos=[c.name for c in result.gate.failed],
        result=result,
        timeline=points,
        incidents=find_incidents(result.client),
    )
    # Written last: a report.json on disk means the run's other files are complete.
    write_text_atomic(artifacts["report_json"], report.model_dump_json(indent=2))
    return artifacts


# ----------------------------------------------------------------------------------------------- markdown


def markdown_summary(result: LoadtestResult, out_dir: Path) -> str:
    c = result.client
    lines = _header_lines(result)
    happened = what_happened(c, result.server)
    if happened:
        lines += ["", "## What happened", "", *happened]
    lines += _client_lines(result) + _gate_lines(result) + _server_lines(result)
    if c.generation is not None:
        lines += generation_markdown(c.generation)
    if c.errors:
        lines += ["", "## Errors", "", "| occurrences | error |", "|---:|---|"]
        lines += [f"| {e.occurrences} | `{e.error[:200]}` |" for e in c.errors[:10]]
    lines += ["", "## Files", ""]
    for key, path in sorted(result.artifacts.items()):
        lines.append(f"- {key}: [{path.name}]({os.path.relpath(path, out_dir)})")
    lines += ["", "![timeline](timeline.png)", "", "![latency histogram](latency_histogram.png)", ""]
    lines += ["![server split](server_split.png)", ""]
    return "\n".join(lines)


def _header_lines(result: LoadtestResult) -> list[str]:
    c, settings = result.client, result.settings
    shape = settings.shape
    verdict = "PASSED" if result.passed else "FAILED"
    load = (
        f"arrival-rate {shape.target_rps:g} req/s (pool of {shape.pool_users()} users)"
        if shape.kind == "arrival-rate"
        else f"{shape.kind}, up to {shape.users} users"
    )
    lines = [
        f"# Load test of `{settings.model}`: {verdict}",
        "",
        f"- server: {settings.endpoint.protocol} {settings.endpoint.url}",
        f"- load: {load}, {shape.duration_s:g} s, request cap {settings.max_requests}, "
        f"batch {settings.request_batch_size} per request"
        + (f", {settings.workers} Locust workers" if settings.workers else ""),
        f"- stopped: {c.stop_reason}",
        f"- requests: {result.workload_source}",
    ]
    if result.length_profile:
        lp = result.length_profile
        lines.append(
            f"- text length (chars): p50 {lp.chars_p50:.0f}, p90 {lp.chars_p90:.0f}, p99 {lp.chars_p99:.0f}, "
            f"max {lp.chars_max}"
        )
    return lines


def _client_lines(result: LoadtestResult) -> list[str]:
    c = result.client
    return [
        "",
        "## Client side (Locust)",
        "",
        "| requests | failures | req/s | items/s | p50 | p95 | p99 | max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {c.requests} | {c.failures} | {c.rps:.1f} | {c.items_per_s:.1f} | {_ms(c.latency.p50_ms)} | "
        f"{_ms(c.latency.p95_ms)} | {_ms(c.latency.p99_ms)} | {_ms(c.latency.max_ms)} |",
    ]


def _gate_lines(result: LoadtestResult) -> list[str]:
    lines = [
        "",
        "## SLO gate",
        "",
        "| SLO | threshold | measured | margin | result |",
        "|---|---:|---:|---:|---|",
    ]
    for check in result.gate.checks:
        measured = "n/a" if check.measured is None else f"{check.measured:.4g} {check.unit}"
        margin = "n/a" if check.margin is None else f"{check.margin:+.4g} {check.unit}"
        lines.append(
            f"| {check.description} ({check.bound}) | {check.threshold:g} {check.unit} | {measured} | "
            f"{margin} | {'pass' if check.passed else '**FAIL**'} |"
        )
    return lines


def _server_lines(result: LoadtestResult) -> list[str]:
    s = result.server
    lines = ["", "## Server side (Triton statistics and metrics)", ""]
    if s.queue_ms is None:
        lines.append(
            "No server statistics were collected" + (f": {s.scrape_errors[0]}" if s.scrape_errors else ".")
        )
        return lines
    lines += [
        f"- per request: queue {_ms(s.queue_ms)}, compute {_ms(s.compute_ms)} "
        f"(queue share {_pct(s.queue_share)})",
        f"- busiest model: `{s.bottleneck_model}`, average batch size {s.avg_batch_size or 0:.1f}",
        f"- CPU utilisation: avg {_pct(s.cpu_utilization_avg)}, max {_pct(s.cpu_utilization_max)}"
        + (
            f"; GPU: avg {_pct(s.gpu_utilization_avg)}, max {_pct(s.gpu_utilization_max)}"
            if s.gpu_utilization_avg is not None
            else "; GPU: not exposed"
        ),
        "",
        "| model | platform | requests | executions | avg batch | queue | compute in | infer | out |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in s.models:
        batch = "n/a" if m.avg_batch_size is None else f"{m.avg_batch_size:.1f}"
        lines.append(
            f"| {m.model} | {m.platform} | {m.requests} | {m.executions} | {batch} | {_ms(m.queue_ms)} | "
            f"{_ms(m.compute_input_ms)} | {_ms(m.compute_infer_ms)} | {_ms(m.compute_output_ms)} |"
        )
    return lines


# ----------------------------------------------------------------------------------------------- plots


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return path


_SLO_STYLES = {"p50_ms": ":", "p95_ms": "--", "p99_ms": "-."}


def latency_slos(result: LoadtestResult) -> list[Reference]:
    """The run's latency SLOs as reference lines (p50 dotted, p95 dashed, p99 dash-dot)."""
    return [
        Reference(c.threshold, f"SLO {c.name[:3]}", style=_SLO_STYLES.get(c.name, "--"))
        for c in result.gate.checks
        if c.unit == "ms"
    ]


def timeline_figure(
    points: list[TimelinePoint], model: str, slos: list[Reference], target_rps: float | None = None
) -> Figure:
    """Throughput, failures and users per second (top); p50 / p95 / p99 per second (bottom)."""
    fig = Figure(figsize=(9, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    t = [p.t_s for p in points]
    rps = [p.rps for p in points]
    failures = [p.failures_per_s for p in points]
    top.plot(t, rps, marker=".", label="requests/s")
    top.plot(t, failures, color="red", marker=".", label="failures/s")
    target = [Reference(target_rps, "target rate", color="grey")] if target_rps else []
    draw_references(top, [*rps, *failures], target, "req/s", log=False)
    top.set_ylabel("requests / s")
    users = top.twinx()
    counts = [p.users or 0 for p in points]
    users.step(t, counts, where="post", color="green", alpha=0.5, label="users")
    fit_axis(users, counts)  # a constant user count is a level on 0..N, not a zoomed-in line
    users.yaxis.set_major_locator(MaxNLocator(integer=True))
    users.set_ylabel("users")
    top.legend(loc="upper left", fontsize="small")
    users.legend(loc="upper right", fontsize="small")
    latencies: list[float | None] = []
    for label, attr in (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms")):
        values = [getattr(p, attr) for p in points]
        latencies += values
        bottom.plot(t, [float("nan") if v is None else v for v in values], marker=".", label=label)
    draw_references(bottom, latencies, slos, "ms")
    bottom.set_xlabel("seconds since start")
    bottom.set_ylabel("latency (ms)")
    bottom.legend(loc="upper left", fontsize="small")
    fig.suptitle(f"{model}: throughput and latency per second")
    fig.tight_layout()
    return fig


def plot_timeline(result: LoadtestResult, points: list[TimelinePoint], path: Path) -> Path:
    return _save(
        timeline_figure(points, result.settings.model, latency_slos(result), result.target_rps), path
    )


def histogram_figure(histogram: dict[float, int], model: str, requests: int, slos: list[Reference]) -> Figure:
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    if histogram:
        keys = sorted(histogram)
        ax.hist(
            keys, bins=min(60, max(10, len(keys))), weights=[histogram[k] for k in keys], color="steelblue"
        )
        for q, style in ((0.50, ":"), (0.95, "--"), (0.99, "-.")):
            value = percentile(histogram, q)
            if value is not None:
                ax.axvline(
                    value, color="black", linestyle=style, linewidth=1, label=f"p{int(q * 100)} {value:g} ms"
                )
        # A threshold far right of every sample would squeeze the histogram into one bar: noted instead.
        draw_references(ax, keys, slos, "ms", axis="x", log=False)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small", loc="center right")
    else:
        ax.text(0.5, 0.5, "no completed requests", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"{model}: latency distribution ({requests} requests)")
    fig.tight_layout()
    return fig


def plot_latency_histogram(result: LoadtestResult, path: Path) -> Path:
    client = result.client
    return _save(
        histogram_figure(client.histogram, result.settings.model, client.requests, latency_slos(result)), path
    )


def plot_server_split(result: LoadtestResult, path: Path) -> Path:
    fig = Figure(figsize=(10, 4.5))
    left, right = fig.subplots(1, 2)
    server = result.server
    steps = [m for m in server.models if m.platform != "ensemble" and m.queue_ms is not None]
    if steps:
        names = [m.model for m in steps]
        parts = (
            ("queue", [m.queue_ms or 0 for m in steps], "tab:orange"),
            ("compute input", [m.compute_input_ms or 0 for m in steps], "tab:olive"),
            ("compute infer", [m.compute_infer_ms or 0 for m in steps], "tab:blue"),
            ("compute output", [m.compute_output_ms or 0 for m in steps], "tab:cyan"),
        )
        offset = [0.0] * len(steps)
        for label, values, color in parts:
            left.barh(names, values, left=offset, label=label, color=color, height=0.6)
            offset = [o + v for o, v in zip(offset, values, strict=True)]
        fit_axis(left, offset, axis="x")  # bar segments' sticky edges would end the axis flush on the longest
        left.set_xlabel("ms per request")
        # Below the axis: inside, it covers the bars (one model fills the whole panel).
        left.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    else:
        left.text(0.5, 0.5, "no server statistics", ha="center", va="center", transform=left.transAxes)
    left.set_title("where server time goes, per model")
    points = [p for p in server.timeline if p.queue_ms is not None]
    if points:
        t = [p.at - result.client.started_at for p in points]
        right.stackplot(
            t,
            [p.queue_ms or 0 for p in points],
            [p.compute_ms or 0 for p in points],
            labels=["queue", "compute"],
            colors=["tab:orange", "tab:blue"],
        )
        fit_axis(right, [(p.queue_ms or 0) + (p.compute_ms or 0) for p in points])
        right.set_xlabel("seconds since start")
        right.set_ylabel("ms per request")
        right.legend(loc="upper left", fontsize="small")
    else:
        right.text(0.5, 0.5, "no server samples", ha="center", va="center", transform=right.transAxes)
    right.set_title("queue vs compute over time")
    fig.tight_layout()
    return _save(fig, path)
