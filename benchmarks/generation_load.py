"""A closed-loop streaming client for generation servers (the PyTorch baseline and Triton alike).

`concurrency` threads each keep one HTTP connection and start the next stream as soon as the last one
ends. Both servers speak the same wire format (POST JSON, server-sent events with `text_output`), so
the client costs the same on both sides. Per stream: time to first token, every inter-token gap, tokens.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.loadgen import LoadError, latency_of
from benchmarks.results import Latency
from triton_bundle.loadtest.generation import sse_events

_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class StreamEndpoint:
    name: str
    host: str
    port: int
    path: str


def triton_stream_endpoint(host: str, port: int, model: str) -> StreamEndpoint:
    return StreamEndpoint(f"triton:{model}", host, port, f"/v2/models/{model}/generate_stream")


def baseline_stream_endpoint(host: str, port: int) -> StreamEndpoint:
    return StreamEndpoint("baseline", host, port, "/generate_stream")


@dataclass(frozen=True)
class StreamLoadResult:
    concurrency: int
    window_s: float
    streams: int
    errors: int
    tokens: int
    tokens_per_s: float  # tokens received inside the window, all streams
    ttft: Latency
    itl: Latency
    first_error: str | None = None


@dataclass
class _Stream:
    started: float
    arrivals: list[float]
    ended: float
    ok: bool


def _chunks(response: http.client.HTTPResponse):
    while chunk := response.read1(65536):  # what has arrived, not a fixed size: tokens are small
        yield chunk


def stream_once(conn: http.client.HTTPConnection, endpoint: StreamEndpoint, body: bytes) -> list[float]:
    """One streamed generation; the arrival time of every token (perf_counter seconds)."""
    conn.request("POST", endpoint.path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise LoadError(f"{endpoint.name} answered HTTP {response.status}: {response.read()[:200]!r}")
    arrivals = []
    for event in sse_events(_chunks(response)):
        if "error" in event:
            raise LoadError(f"{endpoint.name}: {event['error']}")
        if event.get("text_output"):
            arrivals.append(time.perf_counter())
    # A stream may end cleanly with no token (the model's first choice was end-of-text): a finished
    # stream with nothing to time, not an error.
    return arrivals


def _summarise(streams: list[_Stream], window: tuple[float, float], concurrency: int, errors: list[str]):
    start, end = window
    finished = [s for s in streams if start <= s.ended <= end]
    good = [s for s in finished if s.ok]
    if streams and not any(s.ok for s in streams):
        raise LoadError(f"every stream failed; first error: {errors[0] if errors else '?'}")
    tokens = sum(1 for s in streams if s.ok for t in s.arrivals if start <= t <= end)
    gaps = [b - a for s in good for a, b in itertools.pairwise(s.arrivals)]
    return StreamLoadResult(
        concurrency=concurrency,
        window_s=end - start,
        streams=len(good),
        errors=len(finished) - len(good),
        tokens=tokens,
        tokens_per_s=tokens / (end - start),
        ttft=latency_of([s.arrivals[0] - s.started for s in good if s.arrivals]),
        itl=latency_of(gaps),
        first_error=errors[0] if errors else None,
    )


def stream_closed_loop(
    endpoint: StreamEndpoint,
    prompts: Sequence[str],
    max_tokens: int,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
) -> StreamLoadResult:
    """Drive `endpoint` for warmup_s + duration_s; tokens and streams that land in the window count."""
    bodies = [
        json.dumps({"text_input": p, "max_tokens": max_tokens, "stream": True}).encode() for p in prompts
    ]
    order = itertools.count()
    streams: list[_Stream] = []
    errors: list[str] = []
    window_start = time.perf_counter() + warmup_s
    window_end = window_start + duration_s

    def worker() -> None:
        conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=_TIMEOUT_S)
        try:
            while time.perf_counter() < window_end:
                started = time.perf_counter()
                arrivals: list[float] = []
                try:
                    arrivals = stream_once(conn, endpoint, bodies[next(order) % len(bodies)])
                    ok = True
                except (OSError, http.client.HTTPException, LoadError, ValueError) as exc:
                    ok = False
                    errors.append(str(exc))
                    conn.close()
                streams.append(_Stream(started, arrivals, time.perf_counter(), ok))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=warmup_s + duration_s + _TIMEOUT_S)
    return _summarise(streams, (window_start, window_end), concurrency, errors)
