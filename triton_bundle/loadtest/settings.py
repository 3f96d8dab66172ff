"""What one load-test run does, as typed settings the runner writes and the Locust process reads.

The parent process (runner, CLI) builds `LoadSettings`, writes it as JSON and passes its path to Locust
(`--bundle-config`, or the TRITON_BUNDLE_LOADTEST_CONFIG environment variable): the same file drives a
local run, `--processes` workers and workers on other hosts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triton_bundle.errors import BundleError

Protocol = Literal["http", "grpc"]
ShapeKind = Literal["constant", "ramp", "step", "spike", "arrival-rate"]
SHAPE_KINDS: tuple[ShapeKind, ...] = ("constant", "ramp", "step", "spike", "arrival-rate")

CONFIG_ENV = "TRITON_BUNDLE_LOADTEST_CONFIG"
# Arrival-rate: each simulated user paces itself; a pool this many seconds' worth of the target rate
# keeps the offered rate while server latency stays below it (the open-loop approximation's limit).
DEFAULT_POOL_SECONDS = 1.0


class LoadtestUsageError(BundleError, ValueError):
    """Settings that cannot describe a run (missing rate, bad URL, unbounded run)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShapeSettings(_Strict):
    """The load shape: how many users over time (closed loop) or a request rate (arrival-rate)."""

    kind: ShapeKind = "constant"
    users: Annotated[int, Field(ge=1, description="users at full load; the pool size for arrival-rate")] = 8
    spawn_rate: Annotated[float, Field(gt=0, description="users started per second")] = 8.0
    duration_s: Annotated[float, Field(gt=0, le=3600)] = 20.0
    target_rps: Annotated[float | None, Field(gt=0, description="arrival-rate: requests per second")] = None
    steps: Annotated[int, Field(ge=1, description="step: number of equal steps up to `users`")] = 4
    spike_start: Annotated[float, Field(ge=0, le=1, description="spike: start, fraction of duration")] = 0.4
    spike_length: Annotated[float, Field(gt=0, le=1, description="spike: length, fraction of duration")] = 0.2
    baseline_fraction: Annotated[float, Field(gt=0, le=1, description="spike: users outside the spike")] = (
        0.25
    )

    @model_validator(mode="after")
    def _rate_for_arrival(self) -> ShapeSettings:
        if self.kind == "arrival-rate" and self.target_rps is None:
            raise ValueError("shape 'arrival-rate' needs a target rate (target_rps / --rps)")
        return self

    def pool_users(self) -> int:
        """Users to run: `users`, or for arrival-rate enough to hold the rate at up to 1 s latency."""
        if self.kind != "arrival-rate":
            return self.users
        assert self.target_rps is not None
        return max(self.users, math.ceil(self.target_rps * DEFAULT_POOL_SECONDS))


class Endpoint(_Strict):
    """Where the server is: inference URL for the chosen protocol and the metrics URL (same host)."""

    protocol: Protocol = "http"
    url: str = Field(description="host:port of the HTTP or gRPC endpoint")
    metrics_url: str | None = Field(None, description="host:port of Triton's metrics endpoint")
    # The HTTP endpoint also serves the statistics API; for a gRPC test the runner still needs it.
    http_url: str | None = Field(None, description="host:port of the HTTP endpoint (statistics API)")

    @model_validator(mode="after")
    def _same_host(self) -> Endpoint:
        host = host_of(self.url)
        for other in (self.metrics_url, self.http_url):
            if other is not None and host_of(other) != host:
                raise ValueError(
                    f"every URL must point at the server under test ({host}); got {other}: "
                    "a load test only talks to the host it was given"
                )
        return self

    @property
    def host(self) -> str:
        return host_of(self.url)

    def stats_url(self) -> str | None:
        return self.url if self.protocol == "http" else self.http_url


def host_of(url: str) -> str:
    """'127.0.0.1' from '127.0.0.1:8000' or 'http://127.0.0.1:8000/'."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    if not parts.hostname or parts.port is None:
        raise LoadtestUsageError(f"expected host:port (like 127.0.0.1:8000), got {url!r}")
    return parts.hostname


def strip_scheme(url: str) -> str:
    """'host:port' from 'http://host:port/' (tritonclient takes host:port)."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    host_of(url)
    return f"{parts.hostname}:{parts.port}"


class GenerationSettings(_Strict):
    """text-generation runs: each user streams one generation per request."""

    max_tokens: Annotated[int, Field(ge=1)] = 64
    temperature: Annotated[float | None, Field(ge=0)] = Field(None, description="None: greedy")
    seed: Annotated[int | None, Field(ge=0)] = None
    batched: bool = Field(False, description="the model's inputs carry a batch dim (max_batch_size > 0)")


class LoadSettings(_Strict):
    """Everything a Locust process needs for one run."""

    model: str = Field(description="the model clients call (the ensemble, named after the spec)")
    endpoint: Endpoint
    shape: ShapeSettings = ShapeSettings()
    request_batch_size: Annotated[int, Field(ge=1)] = 1
    max_requests: Annotated[int, Field(ge=1, description="hard cap on requests sent, all workers")] = 5000
    think_time_s: Annotated[float, Field(ge=0, description="closed loop: pause between requests")] = 0.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    workers: Annotated[int, Field(ge=0, description="0: one process; N: a master and N workers")] = 0
    outputs: list[str] = Field(default_factory=list, description="outputs to request; [] asks for all")
    workload_path: Path = Field(description="the workload JSON (texts or tensor specs)")
    generation: GenerationSettings | None = Field(
        None, description="set for text-generation: users stream tokens (HTTP SSE or gRPC streaming)"
    )
    summary_path: Path = Field(description="where the master writes its LocustSummary JSON")
    seed: int = 0

    def per_process_request_cap(self) -> int:
        """Each worker's share of the cap; the total may exceed max_requests by at most workers - 1."""
        return math.ceil(self.max_requests / max(1, self.workers))

    def write(self, path: Path) -> Path:
        from triton_bundle.atomic import write_text_atomic

        return write_text_atomic(path, self.model_dump_json(indent=2))

    @classmethod
    def read(cls, path: Path | str) -> LoadSettings:
        path = Path(path)
        if not path.is_file():
            raise LoadtestUsageError(
                f"load-test settings not found at {path}; pass --bundle-config or set {CONFIG_ENV}"
            )
        return cls.model_validate_json(path.read_text(encoding="utf-8"))
