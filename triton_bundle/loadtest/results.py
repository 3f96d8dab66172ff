"""Client-side measurements of one run: what the Locust master writes and the parent process reads.

No Locust import here: the parent process must stay free of Locust's gevent monkey-patching.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from triton_bundle.loadtest.generation import GenerationSummary

# bucket_ms and merge_histograms are re-exported: the Locust process and reports import them from here.
from triton_bundle.loadtest.histograms import bucket_ms, merge_histograms, percentile  # noqa: F401


class LatencySummary(BaseModel):
    """Latency over the whole run, in milliseconds.

    Percentiles come from the run's histogram (`bucket_ms`); avg / min / max are Locust's exact figures.
    Locust's CSV / HTML percentiles round to whole ms below 100 ms, so they can differ slightly.
    """

    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    avg_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None


class SecondBucket(BaseModel):
    """What completed during one wall-clock second, and how many users were running."""

    second: int
    requests: int = 0
    failures: int = 0
    users: int | None = None
    histogram: dict[float, int] = Field(default_factory=dict)


class ErrorCount(BaseModel):
    error: str
    occurrences: int


class LocustSummary(BaseModel):
    """Written by the Locust master (or the only process) when it quits."""

    started_at: float = Field(description="epoch seconds, first user started")
    ended_at: float = Field(description="epoch seconds, the run stopped")
    stop_reason: str
    requests: int
    failures: int
    rps: float = Field(description="requests per second over the run (Locust's total rps)")
    request_batch_size: int
    latency: LatencySummary
    histogram: dict[float, int] = Field(default_factory=dict, description="latency bucket (ms) -> count")
    timeline: list[SecondBucket] = Field(default_factory=list)
    errors: list[ErrorCount] = Field(default_factory=list)
    workers: int = 0
    max_users: int = 0
    generation: GenerationSummary | None = Field(None, description="text-generation: TTFT, ITL, tokens/s")

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def error_rate(self) -> float | None:
        return None if self.requests == 0 else self.failures / self.requests

    @property
    def items_per_s(self) -> float:
        """Inferences per second: requests carry request_batch_size items each."""
        return self.rps * self.request_batch_size


class TimelinePoint(BaseModel):
    """One second of the run, relative to its start, for plots and the report."""

    t_s: float
    users: int | None
    rps: int
    failures_per_s: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def timeline_points(buckets: Iterable[SecondBucket], start: float) -> list[TimelinePoint]:
    """Per-second points with no gaps (a second without completions shows 0 rps)."""
    ordered = sorted(buckets, key=lambda b: b.second)
    if not ordered:
        return []
    by_second = {b.second: b for b in ordered}
    first, last = ordered[0].second, ordered[-1].second
    points = []
    for second in range(first, last + 1):
        b = by_second.get(second, SecondBucket(second=second))
        points.append(
            TimelinePoint(
                t_s=round(second - start, 3),
                users=b.users,
                rps=b.requests,
                failures_per_s=b.failures,
                p50_ms=percentile(b.histogram, 0.50),
                p95_ms=percentile(b.histogram, 0.95),
                p99_ms=percentile(b.histogram, 0.99),
            )
        )
    return points
