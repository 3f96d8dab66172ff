"""Where the latency goes on the server: Triton's statistics API and metrics endpoint, sampled during a run.

A background thread samples the cumulative counters of the statistics API (`/v2/models/stats`: queue and
compute time, inference and execution counts, executions per batch size) and the Prometheus metrics
(`/metrics`, parsed with prometheus_client: CPU / GPU utilisation and memory, pending requests) once per
interval. Differences between samples give the run's totals and a per-interval time series. Only the
model under test and the models its ensemble calls are summarised.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from triton_bundle.admin_key import admin_headers
from triton_bundle.bearer import auth_headers
from triton_bundle.client.errors import ClientError
from triton_bundle.loadtest.settings import Endpoint

if TYPE_CHECKING:  # the client (tritonclient, numpy) loads when a run starts, not for `--help`
    from triton_bundle.client.client import TritonClient
    from triton_bundle.client.stats import ModelStatistics

_NS_PER_MS = 1e6
_FETCH_TIMEOUT_S = 3.0


class ModelCounters(BaseModel):
    """Cumulative counters of one model (all versions) from the statistics API."""

    success: int = 0
    failure: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    inferences: int = 0
    executions: int = 0
    batch_executions: dict[int, int] = Field(default_factory=dict, description="batch size -> executions")

    def add(self, stats: ModelStatistics) -> None:
        """Add one version's statistics (the client's parsed answer of the statistics API)."""
        inference = stats.inference_stats
        self.success += inference.success.count
        self.failure += inference.fail.count
        self.queue_ns += inference.queue.ns
        self.compute_input_ns += inference.compute_input.ns
        self.compute_infer_ns += inference.compute_infer.ns
        self.compute_output_ns += inference.compute_output.ns
        self.inferences += stats.inference_count
        self.executions += stats.execution_count
        for size, count in stats.batches_formed.items():
            self.batch_executions[size] = self.batch_executions.get(size, 0) + count


def counters_by_model(statistics: list[ModelStatistics]) -> dict[str, ModelCounters]:
    """Counters per model name, its versions summed."""
    models: dict[str, ModelCounters] = {}
    for stats in statistics:
        models.setdefault(stats.name, ModelCounters()).add(stats)
    return models


class ServerSample(BaseModel):
    at: float
    models: dict[str, ModelCounters] = Field(default_factory=dict)
    cpu_utilization: float | None = None
    gpu_utilization: float | None = None
    cpu_memory_used_bytes: float | None = None
    gpu_memory_used_bytes: float | None = None
    pending_requests: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class ModelSplit(BaseModel):
    """One model's share of the run: per-request averages in milliseconds."""

    model: str
    platform: str
    requests: int
    failures: int
    inferences: int
    executions: int
    avg_batch_size: float | None
    queue_ms: float | None
    compute_input_ms: float | None
    compute_infer_ms: float | None
    compute_output_ms: float | None
    batch_executions: dict[int, int] = Field(default_factory=dict)

    @property
    def compute_ms(self) -> float | None:
        parts = (self.compute_input_ms, self.compute_infer_ms, self.compute_output_ms)
        return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


class ServerPoint(BaseModel):
    """One sampling interval: server time per request and utilisation."""

    at: float = Field(description="epoch seconds at the end of the interval")
    requests: int
    queue_ms: float | None
    compute_ms: float | None
    pending_requests: float | None
    cpu_utilization: float | None
    gpu_utilization: float | None


class ServerSummary(BaseModel):
    """The server side of a run. queue_ms / compute_ms add up the steps one client request passes."""

    model: str
    models: list[ModelSplit] = Field(default_factory=list)
    queue_ms: float | None = None
    compute_ms: float | None = None
    bottleneck_model: str | None = None
    avg_batch_size: float | None = Field(None, description="of the bottleneck (most compute) model")
    cpu_utilization_avg: float | None = None
    cpu_utilization_max: float | None = None
    gpu_utilization_avg: float | None = None
    gpu_utilization_max: float | None = None
    timeline: list[ServerPoint] = Field(default_factory=list)
    samples: int = 0
    scrape_errors: list[str] = Field(default_factory=list)

    @property
    def queue_share(self) -> float | None:
        if self.queue_ms is None or self.compute_ms is None or self.queue_ms + self.compute_ms == 0:
            return None
        return self.queue_ms / (self.queue_ms + self.compute_ms)


# ----------------------------------------------------------------------------------------------- fetching


def stats_client(stats_url: str) -> TritonClient:
    """The HTTP client that reads the statistics API and model configs (the admin key and the proxy's
    bearer token go with each call, as the production configs restrict these APIs)."""
    from triton_bundle.client.client import ClientOptions, TritonClient

    return TritonClient(stats_url, "http", options=ClientOptions.probing(_FETCH_TIMEOUT_S))


def _get(url: str) -> bytes:
    # The metrics endpoint may sit behind the proxy too: send the bearer token (and admin key) when set.
    request = urllib.request.Request(url, headers={**auth_headers(), **admin_headers("http")})
    with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT_S) as response:
        return response.read()


def parse_metrics(text: str) -> dict[str, object]:
    """The Prometheus text -> utilisation, memory and pending requests per model."""
    values: dict[str, list[float]] = {}
    pending: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nv_inference_pending_request_count":
                model = sample.labels.get("model", "")
                pending[model] = pending.get(model, 0.0) + sample.value
            elif sample.name in (
                "nv_cpu_utilization",
                "nv_gpu_utilization",
                "nv_cpu_memory_used_bytes",
                "nv_gpu_memory_used_bytes",
            ):
                values.setdefault(sample.name, []).append(sample.value)

    def mean(name: str) -> float | None:
        got = values.get(name)
        return sum(got) / len(got) if got else None

    def total(name: str) -> float | None:
        got = values.get(name)
        return sum(got) if got else None

    return {
        "cpu_utilization": mean("nv_cpu_utilization"),
        "gpu_utilization": mean("nv_gpu_utilization"),
        "cpu_memory_used_bytes": total("nv_cpu_memory_used_bytes"),
        "gpu_memory_used_bytes": total("nv_gpu_memory_used_bytes"),
        "pending_requests": pending,
    }


def take_sample(stats: TritonClient | None, metrics_url: str | None) -> ServerSample:
    """One sample of both endpoints; a failed fetch is recorded, never raised (the run goes on)."""
    sample = ServerSample(at=time.time())
    errors = []
    if stats is not None:
        try:
            sample.models = counters_by_model(stats.statistics())
        except (ClientError, OSError, ValueError) as exc:
            errors.append(f"statistics API at {stats.endpoint.address}: {exc}")
    if metrics_url:
        try:
            parsed = parse_metrics(_get(f"http://{metrics_url}/metrics").decode("utf-8", "replace"))
            sample = sample.model_copy(update=parsed)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"metrics at {metrics_url}: {exc}")
    sample.error = "; ".join(errors) or None
    return sample


def model_configs(stats: TritonClient, names: list[str]) -> dict[str, dict]:
    """Each model's config (platform, ensemble steps) from the HTTP API; models that fail are skipped."""
    configs: dict[str, dict] = {}
    for name in names:
        with contextlib.suppress(ClientError, OSError, ValueError):
            configs[name] = stats.model_config(name)
    return configs


def models_under_test(model: str, configs: dict[str, dict]) -> list[str]:
    """The model and, for an ensemble, every model its steps call (recursively)."""
    seen: list[str] = []
    todo = [model]
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        steps = configs.get(name, {}).get("ensemble_scheduling", {}).get("step", [])
        todo += [step["model_name"] for step in steps if "model_name" in step]
    return seen


# ----------------------------------------------------------------------------------------------- thread


class ServerScraper:
    """Samples the server every `interval_s` on a daemon thread between start() and stop()."""

    def __init__(self, endpoint: Endpoint, model: str, interval_s: float = 1.0) -> None:
        self.model = model
        stats_url = endpoint.stats_url()
        self.stats = stats_client(stats_url) if stats_url else None
        self.metrics_url = endpoint.metrics_url
        self.interval_s = interval_s
        self.samples: list[ServerSample] = []
        self.configs: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ServerScraper:
        first = take_sample(self.stats, self.metrics_url)
        self.samples.append(first)
        if self.stats is not None:
            self.configs = model_configs(self.stats, sorted(first.models))
        self._thread = threading.Thread(target=self._loop, name="triton-metrics-scraper", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(take_sample(self.stats, self.metrics_url))

    def stop(self) -> ServerSummary:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 2 * _FETCH_TIMEOUT_S)
        self.samples.append(take_sample(self.stats, self.metrics_url))
        if self.stats is not None:
            self.stats.close()
        return summarize(self.model, self.samples, self.configs)

    def __enter__(self) -> ServerScraper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()


# ----------------------------------------------------------------------------------------------- summary


def _per_request(ns: int, requests: int) -> float | None:
    return ns / requests / _NS_PER_MS if requests > 0 else None


def _delta(after: ModelCounters, before: ModelCounters | None) -> ModelCounters:
    before = before or ModelCounters()
    return ModelCounters(
        success=after.success - before.success,
        failure=after.failure - before.failure,
        queue_ns=after.queue_ns - before.queue_ns,
        compute_input_ns=after.compute_input_ns - before.compute_input_ns,
        compute_infer_ns=after.compute_infer_ns - before.compute_infer_ns,
        compute_output_ns=after.compute_output_ns - before.compute_output_ns,
        inferences=after.inferences - before.inferences,
        executions=after.executions - before.executions,
        batch_executions={
            size: count - before.batch_executions.get(size, 0)
            for size, count in after.batch_executions.items()
            if count - before.batch_executions.get(size, 0) > 0
        },
    )


def _split(name: str, platform: str, d: ModelCounters) -> ModelSplit:
    return ModelSplit(
        model=name,
        platform=platform,
        requests=d.success,
        failures=d.failure,
        inferences=d.inferences,
        executions=d.executions,
        avg_batch_size=d.inferences / d.executions if d.executions else None,
        queue_ms=_per_request(d.queue_ns, d.success),
        compute_input_ms=_per_request(d.compute_input_ns, d.success),
        compute_infer_ms=_per_request(d.compute_infer_ns, d.success),
        compute_output_ms=_per_request(d.compute_output_ns, d.success),
        batch_executions=dict(sorted(d.batch_executions.items())),
    )


def _platform(config: dict) -> str:
    return str(config.get("platform") or config.get("backend") or "unknown")


def _queue_compute(
    before: ServerSample, after: ServerSample, steps: list[str], client_model: str
) -> tuple[int, float | None, float | None]:
    """Client requests and the queue / compute ms one of them spends across the (non-ensemble) steps."""
    requests = _delta(
        after.models.get(client_model, ModelCounters()), before.models.get(client_model)
    ).success
    queue = compute = 0.0
    counted = False
    for name in steps:
        d = _delta(after.models.get(name, ModelCounters()), before.models.get(name))
        if d.success <= 0:
            continue
        counted = True
        queue += d.queue_ns / d.success / _NS_PER_MS
        compute += (d.compute_input_ns + d.compute_infer_ns + d.compute_output_ns) / d.success / _NS_PER_MS
    return requests, (queue if counted else None), (compute if counted else None)


def _stat(values: list[float | None], fn) -> float | None:
    got = [v for v in values if v is not None]
    return fn(got) if got else None


def summarize(model: str, samples: list[ServerSample], configs: dict[str, dict]) -> ServerSummary:
    """Totals between the first and last good sample, and a point per sampling interval."""
    good = [s for s in samples if s.error is None or s.models]
    errors = sorted({s.error for s in samples if s.error})
    summary = ServerSummary(model=model, samples=len(samples), scrape_errors=errors)
    if len(good) < 2:
        return summary
    first, last = good[0], good[-1]
    involved = models_under_test(model, configs)
    # Ensembles only route; their own queue / compute figures add up their steps'.
    steps = [n for n in involved if _platform(configs.get(n, {})) != "ensemble"] or [model]
    for name in involved:
        if name in last.models:
            d = _delta(last.models[name], first.models.get(name))
            summary.models.append(_split(name, _platform(configs.get(name, {})), d))

    _, summary.queue_ms, summary.compute_ms = _queue_compute(first, last, steps, model)
    busy = [m for m in summary.models if m.model in steps and m.compute_infer_ms is not None]
    if busy:
        bottleneck = max(busy, key=lambda m: (m.compute_infer_ms or 0.0) * m.requests)
        summary.bottleneck_model = bottleneck.model
        summary.avg_batch_size = bottleneck.avg_batch_size

    for before, after in itertools.pairwise(good):
        requests, queue, compute = _queue_compute(before, after, steps, model)
        summary.timeline.append(
            ServerPoint(
                at=after.at,
                requests=requests,
                queue_ms=queue,
                compute_ms=compute,
                pending_requests=sum(after.pending_requests.get(n, 0.0) for n in involved)
                if after.pending_requests
                else None,
                cpu_utilization=after.cpu_utilization,
                gpu_utilization=after.gpu_utilization,
            )
        )
    cpu = [s.cpu_utilization for s in good[1:]]
    gpu = [s.gpu_utilization for s in good[1:]]
    summary.cpu_utilization_avg = _stat(cpu, lambda v: sum(v) / len(v))
    summary.cpu_utilization_max = _stat(cpu, max)
    summary.gpu_utilization_avg = _stat(gpu, lambda v: sum(v) / len(v))
    summary.gpu_utilization_max = _stat(gpu, max)
    return summary
