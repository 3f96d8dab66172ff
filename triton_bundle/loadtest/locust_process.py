"""State and event listeners of one Locust process (local, master or worker). Imports Locust.

- settings and workload load lazily from `--bundle-config` (workers on other hosts get it from the
  master's spawn message, so they need not be given it);
- a request budget per process enforces the request cap;
- per-second latency histograms travel from workers to the master in Locust's own reports;
- the master (or the only process) stops the run when the cap is reached and writes the LocustSummary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from triton_bundle.atomic import write_text_atomic
from triton_bundle.loadtest.generation import GenerationStats
from triton_bundle.loadtest.results import (
    ErrorCount,
    LatencySummary,
    LocustSummary,
    SecondBucket,
    bucket_ms,
    merge_histograms,
    percentile,
)
from triton_bundle.loadtest.settings import CONFIG_ENV, LoadSettings
from triton_bundle.loadtest.workload import Workload

_TIMELINE_KEY = "triton_bundle_timeline"
_GENERATION_KEY = "triton_bundle_generation"
_SUPERVISE_EVERY_S = 0.2


class RequestBudget:
    """How many more requests this process may send (greenlets are cooperative: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0

    def take(self) -> bool:
        if self.sent >= self.limit:
            return False
        self.sent += 1
        return True


@dataclass
class Timeline:
    """Per-second request counts, failures, users and latency histograms."""

    buckets: dict[int, SecondBucket] = field(default_factory=dict)

    def _bucket(self, second: int) -> SecondBucket:
        if second not in self.buckets:
            self.buckets[second] = SecondBucket(second=second)
        return self.buckets[second]

    def record(self, response_time_ms: float, failed: bool) -> None:
        bucket = self._bucket(int(time.time()))
        bucket.requests += 1
        bucket.failures += int(failed)
        key = bucket_ms(response_time_ms)
        bucket.histogram[key] = bucket.histogram.get(key, 0) + 1

    def set_users(self, users: int) -> None:
        self._bucket(int(time.time())).users = users

    def drain(self) -> list[dict]:
        out = [b.model_dump() for b in self.buckets.values()]
        self.buckets.clear()
        return out

    def merge(self, reported: list[dict]) -> None:
        for raw in reported:
            incoming = SecondBucket.model_validate(raw)
            bucket = self._bucket(incoming.second)
            bucket.requests += incoming.requests
            bucket.failures += incoming.failures
            merge_histograms(bucket.histogram, incoming.histogram)


@dataclass
class ProcessState:
    settings: LoadSettings
    workload: Workload
    budget: RequestBudget


_state: ProcessState | None = None
_timeline = Timeline()
_generation = GenerationStats()
_run: dict[str, float | str] = {"stop_reason": "duration reached", "max_users": 0, "workers": 0}


def process_state(environment: Environment) -> ProcessState:
    """This process's settings, workload and budget, loaded once."""
    global _state
    if _state is None:
        path = getattr(environment.parsed_options, "bundle_config", None)
        settings = LoadSettings.read(path or "")
        workload = Workload.load(settings.workload_path)
        cap = settings.per_process_request_cap() if _is_worker(environment) else settings.max_requests
        _state = ProcessState(settings=settings, workload=workload, budget=RequestBudget(cap))
    return _state


def generation_stats() -> GenerationStats:
    """This process's streaming measurements (TTFT, inter-token latency, tokens)."""
    return _generation


def _is_worker(environment: Environment) -> bool:
    return isinstance(environment.runner, WorkerRunner)


@events.init_command_line_parser.add_listener
def _add_arguments(parser, **_kwargs) -> None:
    parser.add_argument(
        "--bundle-config",
        type=str,
        env_var=CONFIG_ENV,
        default="",
        help="triton-bundle load-test settings (JSON written by `triton-bundle loadtest`)",
        include_in_web_ui=False,
    )


@events.request.add_listener
def _on_request(response_time, exception=None, **_kwargs) -> None:
    if response_time is not None:
        _timeline.record(float(response_time), exception is not None)


@events.report_to_master.add_listener
def _on_report_to_master(data: dict, **_kwargs) -> None:
    data[_TIMELINE_KEY] = _timeline.drain()
    data[_GENERATION_KEY] = _generation.drain()


@events.worker_report.add_listener
def _on_worker_report(data: dict, **_kwargs) -> None:
    _timeline.merge(data.get(_TIMELINE_KEY, []))
    _generation.merge(data.get(_GENERATION_KEY, {}))


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_kwargs) -> None:
    if not _is_worker(environment):
        _run["started_at"] = time.time()


@events.init.add_listener
def _on_init(environment: Environment, **_kwargs) -> None:
    if not _is_worker(environment) and environment.runner is not None:
        process_state(environment)  # fail at start-up, not mid-run, when the settings are unusable
        gevent.spawn(_supervise, environment)


def _supervise(environment: Environment) -> None:
    """Record the user count each second; quit once the request cap has completed."""
    runner = environment.runner
    assert runner is not None
    settings = process_state(environment).settings
    while True:
        gevent.sleep(_SUPERVISE_EVERY_S)
        if "started_at" not in _run:
            continue
        _timeline.set_users(runner.user_count)
        _run["max_users"] = max(int(_run["max_users"]), runner.user_count)
        if isinstance(runner, MasterRunner):
            _run["workers"] = max(int(_run["workers"]), len(runner.clients))
        if environment.stats.total.num_requests >= settings.max_requests:
            _run["stop_reason"] = f"request cap reached ({settings.max_requests})"
            runner.quit()
            return


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_kwargs) -> None:
    if _is_worker(environment) or _state is None:
        return
    write_summary(environment, _state.settings)
    if getattr(environment.parsed_options, "csv_prefix", None):
        # Locust rewrites its CSV files once a second and not at exit: give its writer one more turn,
        # else a run shorter than a second (or its last second) is missing from locust_stats.csv.
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


def write_summary(environment: Environment, settings: LoadSettings) -> LocustSummary:
    total = environment.stats.total
    has_samples = total.num_requests > 0
    histogram = _whole_run_histogram()
    started_at, ended_at = float(_run.get("started_at", total.start_time)), time.time()
    summary = LocustSummary(
        started_at=started_at,
        ended_at=ended_at,
        stop_reason=str(_run["stop_reason"]),
        requests=total.num_requests,
        failures=total.num_failures,
        rps=float(total.total_rps),
        request_batch_size=settings.request_batch_size,
        # Percentiles from our histogram (0.1 ms steps below 10 ms): Locust's own round to whole ms
        # below 100 ms, too coarse to gate a service that answers in a few ms. avg/min/max are exact.
        latency=LatencySummary(
            p50_ms=percentile(histogram, 0.50),
            p90_ms=percentile(histogram, 0.90),
            p95_ms=percentile(histogram, 0.95),
            p99_ms=percentile(histogram, 0.99),
            avg_ms=float(total.avg_response_time) if has_samples else None,
            min_ms=float(total.min_response_time) if total.min_response_time is not None else None,
            max_ms=float(total.max_response_time) if has_samples else None,
        ),
        histogram=histogram,
        timeline=sorted(_timeline.buckets.values(), key=lambda b: b.second),
        errors=[
            ErrorCount(error=str(e.error), occurrences=e.occurrences)
            for e in sorted(environment.stats.errors.values(), key=lambda e: -e.occurrences)
        ],
        workers=int(_run["workers"]),
        max_users=int(_run["max_users"]),
        generation=_generation.summary(ended_at - started_at) if settings.generation else None,
    )
    write_text_atomic(settings.summary_path, summary.model_dump_json(indent=1))
    return summary


def _whole_run_histogram() -> dict[float, int]:
    merged: dict[float, int] = {}
    for bucket in _timeline.buckets.values():
        merge_histograms(merged, bucket.histogram)
    return merged
