"""Streaming generation measurements: time to first token, inter-token latency, output tokens/s.

Each Locust process collects them in a `GenerationStats` (histograms, per-second token counts, tokens per
user); workers ship theirs to the master in Locust's own reports (custom stats), and the master turns the
merged collection into the `GenerationSummary` of the run. No Locust import here: the parent process
reads these models too.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from triton_bundle.loadtest.histograms import bucket_ms, merge_histograms, percentile


class StreamRecord(BaseModel):
    """One generation request as a client saw it (times in ms from sending the request)."""

    ttft_ms: float | None = Field(None, description="first token; None when no token arrived")
    itl_ms: list[float] = Field(default_factory=list, description="gaps between consecutive tokens")
    latency_ms: float
    tokens: int

    def arrival_offsets_ms(self) -> list[float]:
        """Each token's arrival, ms after the request was sent."""
        if self.ttft_ms is None:
            return []
        return list(itertools.accumulate(self.itl_ms, initial=self.ttft_ms))

    @property
    def tokens_per_s(self) -> float | None:
        """What this stream delivered: tokens over the whole request (prefill included)."""
        return None if self.latency_ms <= 0 or self.tokens == 0 else 1000.0 * self.tokens / self.latency_ms


def sse_events(chunks: Iterable[bytes]) -> Iterator[dict]:
    """JSON payloads of the `data:` lines of a server-sent event stream, as the bytes arrive."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            for line in raw.splitlines():
                if line.startswith(b"data:"):
                    yield json.loads(line[5:].strip() or b"{}")
    for line in buffer.splitlines():
        if line.startswith(b"data:"):
            yield json.loads(line[5:].strip() or b"{}")


def record_from_arrivals(sent_at: float, arrivals: list[float], ended_at: float) -> StreamRecord:
    """A StreamRecord from perf_counter() seconds: request sent, each token's arrival, stream end."""
    ms = [1000.0 * (t - sent_at) for t in arrivals]
    return StreamRecord(
        ttft_ms=ms[0] if ms else None,
        itl_ms=[later - earlier for earlier, later in itertools.pairwise(ms)],
        latency_ms=1000.0 * (ended_at - sent_at),
        tokens=len(arrivals),
    )


class Percentiles(BaseModel):
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    samples: int = 0

    @classmethod
    def of(cls, histogram: dict[float, int]) -> Percentiles:
        return cls(
            p50_ms=percentile(histogram, 0.50),
            p90_ms=percentile(histogram, 0.90),
            p95_ms=percentile(histogram, 0.95),
            p99_ms=percentile(histogram, 0.99),
            samples=sum(histogram.values()),
        )


class GenerationSummary(BaseModel):
    """Streaming measurements of one run (in LocustSummary.generation)."""

    streams: int = Field(description="generation requests that completed without error")
    tokens: int = Field(description="output tokens received, all streams")
    tokens_per_s: float | None = Field(None, description="output tokens per second over the run")
    ttft: Percentiles
    itl: Percentiles
    stream_tokens_per_s_p50: float | None = Field(None, description="median tokens/s one stream saw")
    stream_tokens_per_s_min: float | None = None
    user_tokens_per_s: dict[str, float] = Field(
        default_factory=dict, description="per simulated user: tokens received / run duration"
    )
    ttft_histogram: dict[float, int] = Field(default_factory=dict)
    itl_histogram: dict[float, int] = Field(default_factory=dict)
    tokens_by_second: dict[int, int] = Field(default_factory=dict, description="epoch second -> tokens")


def _rate_bucket(value: float) -> float:
    """Tokens/s rounded to ~2 significant digits, so the rate histogram stays small."""
    return bucket_ms(value)


@dataclass
class GenerationStats:
    """What one Locust process measured; mergeable across workers."""

    ttft: dict[float, int] = field(default_factory=dict)
    itl: dict[float, int] = field(default_factory=dict)
    stream_rates: dict[float, int] = field(default_factory=dict)
    tokens_by_second: dict[int, int] = field(default_factory=dict)
    user_tokens: dict[str, int] = field(default_factory=dict)
    streams: int = 0
    tokens: int = 0

    def record(self, user: str, record: StreamRecord, ended_at_epoch: float) -> None:
        """A completed stream: its TTFT, every inter-token gap, its rate and its tokens."""
        self.streams += 1
        self.tokens += record.tokens
        self.user_tokens[user] = self.user_tokens.get(user, 0) + record.tokens
        for offset in record.arrival_offsets_ms():  # each token in the wall-clock second it arrived
            second = int(ended_at_epoch - (record.latency_ms - offset) / 1000.0)
            self.tokens_by_second[second] = self.tokens_by_second.get(second, 0) + 1
        if record.ttft_ms is not None:
            key = bucket_ms(record.ttft_ms)
            self.ttft[key] = self.ttft.get(key, 0) + 1
        for gap in record.itl_ms:
            key = bucket_ms(gap)
            self.itl[key] = self.itl.get(key, 0) + 1
        rate = record.tokens_per_s
        if rate is not None:
            key = _rate_bucket(rate)
            self.stream_rates[key] = self.stream_rates.get(key, 0) + 1

    def drain(self) -> dict:
        """This process's stats as a JSON-able dict (sent to the master), then reset."""
        out = {
            "ttft": self.ttft,
            "itl": self.itl,
            "stream_rates": self.stream_rates,
            "tokens_by_second": self.tokens_by_second,
            "user_tokens": self.user_tokens,
            "streams": self.streams,
            "tokens": self.tokens,
        }
        fresh = GenerationStats()
        self.__dict__.update(fresh.__dict__)
        return out

    def merge(self, data: dict) -> None:
        merge_histograms(self.ttft, data.get("ttft", {}))
        merge_histograms(self.itl, data.get("itl", {}))
        merge_histograms(self.stream_rates, data.get("stream_rates", {}))
        for second, count in data.get("tokens_by_second", {}).items():
            self.tokens_by_second[int(second)] = self.tokens_by_second.get(int(second), 0) + count
        for user, count in data.get("user_tokens", {}).items():
            self.user_tokens[user] = self.user_tokens.get(user, 0) + count
        self.streams += int(data.get("streams", 0))
        self.tokens += int(data.get("tokens", 0))

    def summary(self, duration_s: float) -> GenerationSummary:
        rates = sorted(self.stream_rates)
        return GenerationSummary(
            streams=self.streams,
            tokens=self.tokens,
            tokens_per_s=self.tokens / duration_s if duration_s > 0 and self.streams else None,
            ttft=Percentiles.of(self.ttft),
            itl=Percentiles.of(self.itl),
            stream_tokens_per_s_p50=percentile(self.stream_rates, 0.50),
            stream_tokens_per_s_min=rates[0] if rates else None,
            user_tokens_per_s={
                user: count / duration_s for user, count in sorted(self.user_tokens.items()) if duration_s > 0
            },
            ttft_histogram=dict(self.ttft),
            itl_histogram=dict(self.itl),
            tokens_by_second=dict(sorted(self.tokens_by_second.items())),
        )
