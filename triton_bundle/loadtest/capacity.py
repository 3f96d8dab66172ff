"""Capacity search: the highest user count (or request rate) that still meets the SLOs, in bounded steps.

Doubling from a start level until a level fails (or the limit passes), then bisection between the last
pass and the first fail until they are one resolution apart. A start level that fails halves instead.
Each level is one short, bounded load test. Under arrival-rate a level passes only if the server also
sustained the offered rate (achieved >= `min_rate_fraction` of the target).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter
from pydantic import BaseModel, Field

from triton_bundle.atomic import atomic_path, write_text_atomic
from triton_bundle.errors import BundleError
from triton_bundle.formatting import ms
from triton_bundle.loadtest.record import CapacityDetails, CapacityRecord
from triton_bundle.loadtest.runner import LoadtestResult, run_loadtest
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, build_settings, prepare_run_dir, target_model
from triton_bundle.loadtest.workload import Workload, workload_for
from triton_bundle.manifest import Manifest
from triton_bundle.plotting import fit_axis, wants_log
from triton_bundle.spec import ModelSpec, SLOSpec

CapacityMode = Literal["users", "rps"]
STAGE = "capacity"


class CapacityUsageError(BundleError, ValueError):
    """Search bounds that cannot work (start above limit, too few steps)."""


class CapacityStep(BaseModel):
    level: float
    passed: bool
    reasons: list[str] = Field(default_factory=list, description="why it failed (SLO explanations)")
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float | None
    run_dir: Path | None = None


class CapacityResult(BaseModel):
    """The best passing level, the lowest failing one, and every step taken."""

    model: str
    mode: CapacityMode
    best: float | None = Field(description="highest level that met the SLOs (None: even the lowest failed)")
    lowest_failing: float | None
    converged: bool = Field(
        description="best and lowest_failing are one resolution apart, or the limit passed"
    )
    limit: float
    max_steps: int
    steps: list[CapacityStep]
    note: str


class LevelOutcome(BaseModel):
    passed: bool
    reasons: list[str]
    rps: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None
    run_dir: Path | None = None


def _round(level: float, mode: CapacityMode) -> float:
    return float(max(1, round(level))) if mode == "users" else round(level, 2)


def _resolution(mode: CapacityMode, lo: float, relative: float) -> float:
    return 1.0 if mode == "users" else max(0.5, relative * lo)


def search(
    evaluate: Callable[[float], LevelOutcome],
    *,
    mode: CapacityMode,
    start: float,
    limit: float,
    max_steps: int,
    relative_resolution: float = 0.1,
    model: str = "",
) -> CapacityResult:
    """Find the highest passing level in at most max_steps evaluations."""
    if start <= 0 or limit < start:
        raise CapacityUsageError(f"expected 0 < start <= limit, got start {start:g}, limit {limit:g}")
    if max_steps < 1:
        raise CapacityUsageError("max_steps must be at least 1")
    floor = 1.0 if mode == "users" else min(start, 1.0)
    lo: float | None = None
    hi: float | None = None
    steps: list[CapacityStep] = []
    level = _round(start, mode)
    note = f"step budget ({max_steps}) spent before convergence"
    converged = False
    while len(steps) < max_steps:
        outcome = evaluate(level)
        steps.append(CapacityStep(level=level, **outcome.model_dump()))
        if outcome.passed:
            lo = level
        else:
            hi = level
        if lo is not None and lo >= limit:
            converged, note = True, f"the limit ({limit:g}) still meets the SLOs"
            break
        if hi is not None and hi <= floor:
            converged, note = True, f"even the lowest level ({floor:g}) misses the SLOs"
            break
        if lo is not None and hi is not None and hi - lo <= _resolution(mode, lo, relative_resolution):
            converged, note = True, f"converged: {lo:g} passes, {hi:g} fails"
            break
        if hi is None:
            nxt = min(limit, (lo or level) * 2)
        elif lo is None:
            nxt = max(floor, hi / 2)
        else:
            nxt = (lo + hi) / 2
        nxt = _round(nxt, mode)
        if nxt in (lo, hi):  # rounding cannot split the interval further
            converged, note = True, f"converged: {lo:g} passes, {hi:g} fails"
            break
        level = nxt
    return CapacityResult(
        model=model,
        mode=mode,
        best=lo,
        lowest_failing=hi,
        converged=converged,
        limit=limit,
        max_steps=max_steps,
        steps=steps,
        note=note,
    )


def outcome_of(
    result: LoadtestResult, mode: CapacityMode, level: float, min_rate_fraction: float
) -> LevelOutcome:
    """A level passes when the gate passes and, under arrival-rate, the offered rate was sustained."""
    c = result.client
    reasons = [check.explain() for check in result.gate.failed]
    if mode == "rps" and c.rps < min_rate_fraction * level:
        reasons.append(
            f"FAILED: achieved {c.rps:.1f} req/s, below {min_rate_fraction:.0%} of the offered {level:g}"
        )
    return LevelOutcome(
        passed=not reasons,
        reasons=reasons,
        rps=c.rps,
        p50_ms=c.latency.p50_ms,
        p95_ms=c.latency.p95_ms,
        p99_ms=c.latency.p99_ms,
        error_rate=c.error_rate,
        run_dir=result.run_dir,
    )


def capacity_stage(
    spec: ModelSpec,
    workdir: Path,
    *,
    mode: CapacityMode = "users",
    start: float = 1,
    limit: float = 64,
    max_steps: int = 6,
    step_duration_s: float | None = None,
    overrides: Overrides | None = None,
    out: Path | None = None,
    force: bool = False,
    slo: SLOSpec | None = None,
    endpoint: Endpoint | None = None,
    workload: Workload | None = None,
    min_rate_fraction: float = 0.9,
) -> CapacityResult:
    """Run the search against a running server; writes capacity.json / capacity.md / capacity.png."""
    overrides = overrides or Overrides()
    out_dir = prepare_run_dir(out or workdir / STAGE, force)
    slo = slo or spec.loadtest.slo
    workload = workload or workload_for(spec, seed=overrides.seed or 0)

    def evaluate(level: float) -> LevelOutcome:
        run_dir = out_dir / f"step-{len(list(out_dir.glob('step-*'))) + 1:02d}-{mode}-{level:g}"
        update: dict[str, object] = {"duration_s": step_duration_s or overrides.duration_s}
        if mode == "users":
            update |= {"shape": "constant", "users": int(level), "spawn_rate": max(level, 1.0)}
        else:
            update |= {"shape": "arrival-rate", "target_rps": level}
        settings = build_settings(spec, overrides.model_copy(update=update), run_dir, endpoint)
        result = run_loadtest(settings, workload, slo, run_dir)
        write_text_atomic(run_dir / "result.json", result.model_dump_json(indent=2))
        return outcome_of(result, mode, level, min_rate_fraction)

    result = search(
        evaluate,
        mode=mode,
        start=start,
        limit=limit,
        max_steps=max_steps,
        model=target_model(spec, overrides),
    )
    artifacts = write_capacity_report(result, out_dir)
    manifest = Manifest.load(workdir, spec.name)
    manifest.record(
        CapacityRecord(
            artifacts={k: v.resolve() for k, v in artifacts.items()},
            metrics={"best": result.best} if result.best is not None else {},
            details=CapacityDetails(
                mode=mode, converged=result.converged, note=result.note, steps=len(result.steps)
            ),
            passed=result.best is not None,
        )
    )
    manifest.save(workdir)
    return result


def write_capacity_report(result: CapacityResult, out_dir: Path) -> dict[str, Path]:
    unit = "users" if result.mode == "users" else "req/s offered"
    lines = [
        f"# Capacity of `{result.model}`: {'n/a' if result.best is None else f'{result.best:g}'} {unit}",
        "",
        f"{result.note}; {len(result.steps)} of at most {result.max_steps} steps, limit {result.limit:g}.",
        "",
        f"| step | {unit} | result | req/s | p50 | p95 | p99 | errors | why |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for i, s in enumerate(result.steps, start=1):
        err = "n/a" if s.error_rate is None else f"{100 * s.error_rate:.2f}%"
        lines.append(
            f"| {i} | {s.level:g} | {'pass' if s.passed else 'FAIL'} | {s.rps:.1f} | {ms(s.p50_ms, 0)} | "
            f"{ms(s.p95_ms, 0)} | {ms(s.p99_ms, 0)} | {err} | {'; '.join(s.reasons)} |"
        )
    lines += ["", "![capacity](capacity.png)", ""]
    artifacts = {
        "capacity_json": write_text_atomic(out_dir / "capacity.json", result.model_dump_json(indent=2)),
        "capacity_md": write_text_atomic(out_dir / "capacity.md", "\n".join(lines)),
        "capacity_png": plot_capacity(result, out_dir / "capacity.png"),
    }
    return artifacts


def capacity_figure(result: CapacityResult) -> Figure:
    """p95 per level (green pass, red fail) and achieved req/s; levels that double get a log axis."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    ordered = sorted(result.steps, key=lambda s: s.level)
    levels = [s.level for s in ordered]
    p95 = [s.p95_ms if s.p95_ms is not None else math.nan for s in ordered]
    ax.plot(levels, p95, color="grey", zorder=1)
    for s in ordered:
        if s.p95_ms is not None:  # a level where nothing completed has no latency: never drawn at 0
            ax.scatter(s.level, s.p95_ms, color="green" if s.passed else "red", zorder=2)
    fit_axis(ax, p95, log=wants_log(p95))
    if wants_log(levels):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xticks(levels)  # the levels measured, not 1.2 or 1.4 users
    ax.set_xlabel("users" if result.mode == "users" else "offered req/s")
    ax.set_ylabel("p95 latency (ms)")
    missing = [f"{s.level:g}" for s in ordered if s.p95_ms is None]
    if missing:
        ax.text(0.01, 0.97, f"no completed requests at {', '.join(missing)}", transform=ax.transAxes,
                ha="left", va="top", fontsize="small", color="red")  # fmt: skip
    rps_ax = ax.twinx()
    rps = [s.rps for s in ordered]
    rps_ax.plot(levels, rps, color="tab:blue", linestyle="--", marker=".")
    fit_axis(rps_ax, rps)
    rps_ax.set_ylabel("achieved req/s", color="tab:blue")
    if result.best is not None:
        ax.axvline(result.best, color="green", linestyle=":", label=f"capacity {result.best:g}")
        ax.legend(loc="lower right", fontsize="small")
    ax.set_title(f"{result.model}: capacity search (green pass, red fail)")
    fig.tight_layout()
    return fig


def plot_capacity(result: CapacityResult, path: Path) -> Path:
    fig = capacity_figure(result)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
