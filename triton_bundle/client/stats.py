"""Triton's per-model statistics, typed, with the numbers that explain latency: time queued vs time
computing, and the batch sizes the dynamic batcher actually formed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field
from rich.table import Table


class _Loose(BaseModel):
    # Triton adds fields between releases (response_stats, memory_usage, ...): keep what we know.
    model_config = ConfigDict(extra="ignore")


class Duration(_Loose):
    """A counter and the total nanoseconds spent in it (gRPC's JSON omits zeros, hence defaults)."""

    count: int = 0
    ns: int = 0

    @property
    def avg_us(self) -> float | None:
        return self.ns / self.count / 1000.0 if self.count else None


class InferenceStats(_Loose):
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()
    cache_hit: Duration = Duration()
    cache_miss: Duration = Duration()


class BatchStats(_Loose):
    batch_size: int
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()


class ModelStatistics(_Loose):
    name: str
    version: str = ""
    last_inference: int = Field(0, description="ms since the epoch; 0 if never used")
    inference_count: int = Field(0, description="items inferred (a batch of 8 counts 8)")
    execution_count: int = Field(0, description="model executions (a batch of 8 counts 1)")
    inference_stats: InferenceStats = InferenceStats()
    batch_stats: list[BatchStats] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def request_count(self) -> int:
        """Requests the model answered, successfully or not."""
        return self.inference_stats.success.count + self.inference_stats.fail.count

    @computed_field  # type: ignore[prop-decorator]
    @property
    def average_batch_size(self) -> float | None:
        return self.inference_count / self.execution_count if self.execution_count else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def batches_formed(self) -> dict[int, int]:
        """Batch size -> how many executions ran at that size."""
        return {
            b.batch_size: b.compute_infer.count for b in sorted(self.batch_stats, key=lambda b: b.batch_size)
        }


def parse_statistics(payload: Mapping[str, Any]) -> list[ModelStatistics]:
    """Parse get_inference_statistics' JSON (HTTP or gRPC; gRPC's uint64 strings coerce to int)."""
    return [ModelStatistics.model_validate(item) for item in payload.get("model_stats", [])]


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _batches(stats: ModelStatistics, limit: int = 6) -> str:
    formed = sorted(stats.batches_formed.items(), key=lambda kv: -kv[1])
    text = " ".join(f"{size}x{count}" for size, count in formed[:limit])
    return text + (" ..." if len(formed) > limit else "") if text else "-"


def stats_table(stats: list[ModelStatistics], title: str = "Triton model statistics") -> Table:
    """A rich table, one row per model version. Times are averages per request, in microseconds."""
    table = Table(title=title, title_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("ver", justify="right")
    for name in ("requests", "failed", "inferences", "executions", "avg batch"):
        table.add_column(name, justify="right")
    for name in ("queue µs", "input µs", "infer µs", "output µs"):
        table.add_column(name, justify="right")
    table.add_column("batches formed (size x count)")
    for s in stats:
        stage = s.inference_stats
        table.add_row(
            s.name,
            s.version,
            f"{s.request_count:,}",
            f"{stage.fail.count:,}",
            f"{s.inference_count:,}",
            f"{s.execution_count:,}",
            "-" if s.average_batch_size is None else f"{s.average_batch_size:.2f}",
            _us(stage.queue.avg_us),
            _us(stage.compute_input.avg_us),
            _us(stage.compute_infer.avg_us),
            _us(stage.compute_output.avg_us),
            _batches(s),
        )
    return table
