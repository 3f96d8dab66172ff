"""`loadtest-compare`: Locust and perf_analyzer at the same concurrency and batch size, side by side.

Locust with N users and no think time is a closed loop of N outstanding requests, which is what
perf_analyzer's `--concurrency-range N:N` (synchronous calls) measures. perf_analyzer measures three
windows that together last about as long as the Locust run.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from triton_bundle.atomic import write_text_atomic
from triton_bundle.loadtest.perf_analyzer import PerfAnalyzerInstall, PerfAnalyzerResult, run_perf_analyzer
from triton_bundle.loadtest.runner import LoadtestResult, run_loadtest
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, build_settings, prepare_run_dir
from triton_bundle.loadtest.workload import Workload, workload_for
from triton_bundle.spec import ModelSpec

_MIN_WINDOW_MS = 500
# Locust counts as keeping up when its throughput is within this share of perf_analyzer's.
TOLERANCE = 0.15


class ToolRow(BaseModel):
    tool: str
    requests: int
    failures: int = 0
    rps: float
    infer_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class CompareResult(BaseModel):
    model: str
    protocol: str
    concurrency: int
    batch_size: int
    rows: list[ToolRow]
    perf_analyzer: PerfAnalyzerResult
    locust_run_dir: Path
    throughput_ratio: float | None = Field(
        None, description="Locust's req/s over perf_analyzer's at the same concurrency (1.0: equal)"
    )
    tolerance: float = TOLERANCE

    @property
    def keeps_up(self) -> bool | None:
        """Locust within the tolerance of perf_analyzer (None: perf_analyzer measured nothing)."""
        if self.throughput_ratio is None:
            return None
        return self.throughput_ratio >= 1.0 - self.tolerance

    def verdict(self) -> str:
        if self.throughput_ratio is None:
            return "perf_analyzer measured no throughput: no ratio"
        if self.keeps_up:
            meaning = f"within {self.tolerance:.0%}: the load generator keeps up"
        else:
            meaning = f"NOT within {self.tolerance:.0%}: the load generator is the bottleneck"
        return f"Locust reached {self.throughput_ratio:.2f}x perf_analyzer's throughput ({meaning})"


def throughput_ratio(locust: ToolRow, perf: ToolRow) -> float | None:
    return round(locust.rps / perf.rps, 4) if perf.rps > 0 else None


def locust_row(result: LoadtestResult) -> ToolRow:
    c = result.client
    return ToolRow(
        tool="locust",
        requests=c.requests,
        failures=c.failures,
        rps=c.rps,
        infer_per_s=c.items_per_s,
        p50_ms=c.latency.p50_ms,
        p95_ms=c.latency.p95_ms,
        p99_ms=c.latency.p99_ms,
    )


def perf_row(result: PerfAnalyzerResult) -> ToolRow:
    return ToolRow(
        tool="perf_analyzer",
        requests=result.requests,
        rps=result.rps,
        infer_per_s=result.infer_per_s,
        p50_ms=result.p50_ms,
        p95_ms=result.p95_ms,
        p99_ms=result.p99_ms,
    )


def compare_stage(
    spec: ModelSpec,
    workdir: Path,
    install: PerfAnalyzerInstall,
    *,
    concurrency: int,
    overrides: Overrides | None = None,
    out: Path | None = None,
    force: bool = False,
    endpoint: Endpoint | None = None,
    workload: Workload | None = None,
) -> CompareResult:
    overrides = (overrides or Overrides()).model_copy(
        update={
            "shape": "constant",
            "users": concurrency,
            "spawn_rate": float(concurrency),
            "think_time_s": 0.0,
        }
    )
    out_dir = prepare_run_dir(out or workdir / "loadtest-compare", force)
    workload = workload or workload_for(spec, seed=overrides.seed or 0)
    settings = build_settings(spec, overrides, out_dir / "locust", endpoint)
    locust = run_loadtest(settings, workload, spec.loadtest.slo, out_dir / "locust")
    perf = run_perf_analyzer(
        install,
        locust.settings.endpoint,
        locust.settings.model,
        workload,
        concurrency=concurrency,
        batch_size=settings.request_batch_size,
        window_ms=max(_MIN_WINDOW_MS, int(settings.shape.duration_s * 1000 / 3)),
        out_dir=out_dir / "perf_analyzer",
        timeout_s=max(60.0, settings.shape.duration_s * 3),
    )
    rows = [locust_row(locust), perf_row(perf)]
    result = CompareResult(
        model=settings.model,
        protocol=settings.endpoint.protocol,
        concurrency=concurrency,
        batch_size=settings.request_batch_size,
        rows=rows,
        perf_analyzer=perf,
        locust_run_dir=out_dir / "locust",
        throughput_ratio=throughput_ratio(*rows),
    )
    write_text_atomic(out_dir / "compare.json", result.model_dump_json(indent=2))
    return result
