"""Every axis the bundle draws fits its data: far SLOs become notes, constant series stay levels."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from triton_bundle.loadtest.capacity import CapacityResult, CapacityStep, capacity_figure
from triton_bundle.loadtest.report import histogram_figure, timeline_figure
from triton_bundle.loadtest.results import TimelinePoint
from triton_bundle.plotting import Reference, fit_limits, wants_log

SLOS = [Reference(1000, "SLO p95"), Reference(2000, "SLO p99", style="-.")]


def _points(users=lambda i: 8, p50=lambda i: 24.0 + i % 3, spike=None, seconds=20):
    return [
        TimelinePoint(
            t_s=i,
            users=users(i),
            rps=270 + 7 * (i % 4),
            failures_per_s=0,
            p50_ms=p50(i),
            p95_ms=spike if spike and i == seconds // 2 else p50(i) * 1.8,
            p99_ms=spike if spike and i == seconds // 2 else p50(i) * 2.2,
        )
        for i in range(seconds)
    ]


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def _hlines(ax) -> list[float]:
    return [line.get_ydata()[0] for line in ax.get_lines() if len(set(line.get_ydata())) == 1]


@pytest.mark.parametrize(
    ("values", "low", "high_range"),
    [
        ([8, 8, 8], 0.0, (8.0, 12.0)),  # a constant user count: a level on 0..N, not 7.6..8.4
        ([0, 0], 0.0, (1.0, 1.0)),
        ([20, 50], 0.0, (50.0, 60.0)),
        ([None, math.nan, 3.0], 0.0, (3.0, 4.0)),
    ],
)
def test_limits_fit_the_data_and_never_zoom_a_constant(values, low, high_range):
    got_low, got_high = fit_limits(values)
    assert got_low == low
    assert high_range[0] <= got_high <= high_range[1]


def test_far_slos_become_a_note_and_latencies_fill_the_panel():
    fig = timeline_figure(_points(), "m", SLOS)
    bottom = fig.axes[1]
    data_max = max(p.p99_ms for p in _points())
    low, high = bottom.get_ylim()
    assert low == 0 and data_max < high < 1.5 * data_max  # not stretched to 2,000 ms
    assert not any(v >= 1000 for v in _hlines(bottom))
    assert "SLO p95 1000 ms, SLO p99 2000 ms" in _texts(bottom)


def test_a_constant_user_count_is_a_level_from_zero():
    users = timeline_figure(_points(), "m", SLOS).axes[2]
    low, high = users.get_ylim()
    assert low == 0 and 8 < high <= 10
    ticks = [t for t in users.get_yticks() if low <= t <= high]
    assert all(float(t).is_integer() for t in ticks)  # users are counted, not measured


def test_an_slo_near_the_data_is_drawn_as_a_line_in_range():
    near = [Reference(60, "SLO p95")]
    bottom = timeline_figure(_points(), "m", near).axes[1]
    assert 60 in _hlines(bottom)
    assert bottom.get_ylim()[1] > 60
    assert "above this range" not in _texts(bottom)


def test_a_latency_spike_gets_a_log_axis_so_the_floor_stays_readable():
    points = _points(spike=1500.0)
    bottom = timeline_figure(points, "m", SLOS).axes[1]
    assert bottom.get_yscale() == "log"
    assert {1000, 2000} <= set(_hlines(bottom))  # near the spike now: drawn in place
    assert bottom.get_ylim()[0] < min(p.p50_ms for p in points)


def test_histogram_keeps_its_bars_wide_when_the_slo_is_far():
    histogram = {float(k): 100 - abs(k - 30) for k in range(10, 80)}
    ax = histogram_figure(histogram, "m", 5000, SLOS).axes[0]
    assert ax.get_xlim()[1] < 1.5 * max(histogram)
    assert "above this range" in _texts(ax)


def test_capacity_never_draws_a_missing_latency_at_zero():
    steps = [
        CapacityStep(level=level, passed=level <= 8, rps=25.0 * min(level, 8), p50_ms=None,
                     p95_ms=None if level == 32 else 4.0 * level, p99_ms=None, error_rate=0.0)
        for level in (1, 2, 4, 8, 16, 32)
    ]  # fmt: skip
    result = CapacityResult(
        model="m", mode="users", best=8, lowest_failing=16, converged=True, limit=32, max_steps=6, steps=steps,
        note="",
    )  # fmt: skip
    ax, rps_ax = capacity_figure(result).axes
    plotted = [tuple(xy) for c in ax.collections for xy in c.get_offsets()]
    assert (32.0, 0.0) not in plotted and len(plotted) == 5
    assert "no completed requests at 32" in _texts(ax)
    assert ax.get_xscale() == "log"  # levels that double spread evenly
    assert list(ax.get_xticks()) == [1, 2, 4, 8, 16, 32]  # ticks at the levels measured
    assert rps_ax.get_ylim()[0] == 0


def test_wants_log_only_for_data_spanning_decades():
    assert wants_log([10, 20, 1500]) and not wants_log([10, 20, 40]) and not wants_log([0, 0, 5])


def test_benchmark_cpu_bars_are_not_cut_at_the_axis_edge(tmp_path, monkeypatch):
    """benchmarks/report.py's stacked bars: zero-width segments used to pin the axis to the longest bar."""
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.report import write_plots
    from benchmarks.results import BenchmarkReport, CpuSplit, Latency, MachineInfo, Row

    latency = Latency(p50_ms=10, p95_ms=20, p99_ms=30, mean_ms=12, samples=10)
    rows = [
        Row(section=section, name=name, variant="fp32", concurrency=4, throughput=50.0, latency=latency,
            requests=10, cpu=CpuSplit(per_request_ms=split, wall_s=1.0, cpu_utilisation=1.0))
        for section, name, split in (
            ("baseline", "eager", {"client": 0.5, "worker": 15.0, "stub": 0.0}),
            ("served", "triton", {"client": 0.5, "worker": 0.0, "stub": 3.0}),
        )
    ]  # fmt: skip
    rows += [  # batch 8 of int8-dynamic was not run: a gap with a note, not a zero-height bar
        Row(section="ort", name=f"ort {v} b{b}", variant=v, batch_size=b, sequence="128", throughput=20.0 * b,
            latency=latency, requests=10)
        for v, b in (("fp32", 1), ("fp32", 8), ("int8-dynamic", 1))
    ]  # fmt: skip
    machine = MachineInfo(
        cpu_model="x", cores=2, load_average_before=(0, 0, 0), python="3", onnxruntime="1", torch="2"
    )
    report = BenchmarkReport(model="m", mode="quick", started_at="t", wall_s=1, machine=machine, rows=rows)
    limits = {}
    monkeypatch.setattr(plt, "close", lambda fig: limits.setdefault(fig.axes[0].get_title(), fig.axes[0]))
    write_plots(report, tmp_path)
    cpu = next(ax for title, ax in limits.items() if title.startswith("Where the CPU goes"))
    assert cpu.get_xlim()[1] > 15.5 * 1.05
    throughput = limits["Throughput"]
    assert throughput.get_ylim()[0] == 0
    ort = limits["onnxruntime in-process, sequence 128"]
    assert "not run" in _texts(ort)
    assert ort.get_xlim()[0] < -0.2 and ort.get_xlim()[1] > 1.2  # both batch groups wholly in view
    assert sorted(round(bar.get_height()) for bar in ort.patches if bar.get_height() > 0) == [20, 20, 160]
