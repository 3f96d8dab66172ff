"""One closed-loop HTTP load generator for every served path (the PyTorch baseline and Triton alike).

`concurrency` threads each keep one connection and send the next held-out text as soon as the last
answer arrives. Only the endpoint's request body and response parsing differ between servers, so the
client costs the same CPU on both sides of a comparison. Plain http.client instead of Locust: on a
2-core box the load generator shares the cores with the server, and a thin client steals the least.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmarks.results import Latency
from triton_bundle.errors import BundleError
from triton_bundle.repository import contract

_TIMEOUT_S = 60.0


class LoadError(BundleError, RuntimeError):
    """The server under load failed every request, or answered something the client cannot read."""


@dataclass(frozen=True)
class HttpEndpoint:
    """Where to POST one text and how to read the top label back."""

    name: str
    host: str
    port: int
    path: str
    encode: Callable[[str], bytes]
    top_label: Callable[[bytes], str]
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


def triton_endpoint(host: str, port: int, model: str) -> HttpEndpoint:
    """The ensemble over Triton's HTTP/JSON protocol: raw text in, LABELS / SCORES out."""

    def encode(text: str) -> bytes:
        body = {
            "inputs": [{"name": contract.TEXT_INPUT, "shape": [1, 1], "datatype": "BYTES", "data": [text]}],
            "outputs": [{"name": contract.LABELS_OUTPUT}, {"name": contract.SCORES_OUTPUT}],
        }
        return json.dumps(body).encode("utf-8")

    def top_label(payload: bytes) -> str:
        outputs = {o["name"]: o for o in json.loads(payload)["outputs"]}
        return str(outputs[contract.LABELS_OUTPUT]["data"][0])

    return HttpEndpoint(f"triton:{model}", host, port, f"/v2/models/{model}/infer", encode, top_label)


def json_text_endpoint(host: str, port: int, path: str = "/predict") -> HttpEndpoint:
    """A hand-written service: {"text": ...} in, {"labels": [...], "scores": [...]} out."""
    return HttpEndpoint(
        "baseline",
        host,
        port,
        path,
        lambda text: json.dumps({"text": text}).encode("utf-8"),
        lambda payload: str(json.loads(payload)["labels"][0]),
    )


@dataclass
class _Sample:
    started: float
    ended: float
    ok: bool


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    window_s: float
    requests: int
    errors: int
    throughput: float  # successful requests per second inside the window
    latency: Latency
    first_error: str | None = None


def _post(conn: http.client.HTTPConnection, endpoint: HttpEndpoint, body: bytes) -> bytes:
    conn.request("POST", endpoint.path, body=body, headers=endpoint.headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise LoadError(f"{endpoint.name} answered HTTP {response.status}: {payload[:200]!r}")
    return payload


def latency_of(seconds: Sequence[float]) -> Latency:
    if not seconds:
        return Latency(p50_ms=0.0, p95_ms=0.0, p99_ms=0.0, mean_ms=0.0, samples=0)
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Latency(
        p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99), mean_ms=float(ms.mean()), samples=len(ms)
    )


def closed_loop(
    endpoint: HttpEndpoint,
    texts: Sequence[str],
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    max_requests: int = 1_000_000,
) -> LoadResult:
    """Drive `endpoint` for warmup_s + duration_s; report what completed inside the measured window."""
    bodies = [endpoint.encode(t) for t in texts]  # encoded once: the client's cost is the HTTP only
    order = itertools.count()  # next() on a count is atomic under the GIL
    samples: list[_Sample] = []
    errors: list[str] = []
    start = time.perf_counter()
    window_start = start + warmup_s
    window_end = window_start + duration_s
    budget = itertools.count()

    def worker() -> None:
        conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=_TIMEOUT_S)
        try:
            while time.perf_counter() < window_end and next(budget) < max_requests:
                body = bodies[next(order) % len(bodies)]
                t0 = time.perf_counter()
                try:
                    _post(conn, endpoint, body)
                    ok = True
                except (OSError, http.client.HTTPException, LoadError) as exc:
                    ok = False
                    errors.append(str(exc))
                    conn.close()  # the next request reconnects
                samples.append(_Sample(t0, time.perf_counter(), ok))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration_s + warmup_s + _TIMEOUT_S)
    measured = [s for s in samples if s.ended >= window_start and s.ended <= window_end]
    good = [s for s in measured if s.ok]
    if samples and not any(s.ok for s in samples):
        raise LoadError(f"every request to {endpoint.name} failed; first error: {errors[0]}")
    return LoadResult(
        concurrency=concurrency,
        window_s=duration_s,
        requests=len(good),
        errors=len(measured) - len(good),
        throughput=len(good) / duration_s,
        latency=latency_of([s.ended - s.started for s in good]),
        first_error=errors[0] if errors else None,
    )


def label_all(endpoint: HttpEndpoint, texts: Sequence[str], concurrency: int = 4) -> list[str]:
    """The top label of every text, in order (each text sent once), for the accuracy columns."""
    labels: list[str | None] = [None] * len(texts)
    indices = iter(range(len(texts)))
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=_TIMEOUT_S)
        try:
            while True:
                with lock:
                    index = next(indices, None)
                if index is None:
                    return
                try:
                    labels[index] = endpoint.top_label(_post(conn, endpoint, endpoint.encode(texts[index])))
                except (OSError, http.client.HTTPException, LoadError, KeyError, ValueError) as exc:
                    failures.append(f"text {index}: {exc}")
                    conn.close()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise LoadError(f"{endpoint.name} failed {len(failures)} of {len(texts)} texts; first: {failures[0]}")
    return [str(label) for label in labels]
