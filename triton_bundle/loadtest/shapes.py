"""Load shapes as plain schedules: run time -> (users, spawn rate), or None when the run is over.

Locust's `LoadTestShape` calls `tick()` about once a second; the locustfile's shape class delegates to
one of these. They hold no Locust import, so the parent process and the unit tests can use them
without Locust's gevent monkey-patching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from triton_bundle.loadtest.settings import ShapeSettings


@dataclass(frozen=True)
class ShapeTick:
    users: int
    spawn_rate: float


class ShapePlan(Protocol):
    duration_s: float

    def tick(self, run_time_s: float) -> ShapeTick | None: ...


@dataclass(frozen=True)
class ConstantShape:
    """`users` for the whole run."""

    users: int
    spawn_rate: float
    duration_s: float

    def tick(self, run_time_s: float) -> ShapeTick | None:
        if run_time_s >= self.duration_s:
            return None
        return ShapeTick(self.users, self.spawn_rate)


@dataclass(frozen=True)
class RampShape:
    """From one user up to `users`, linearly over the whole run."""

    users: int
    spawn_rate: float
    duration_s: float

    def tick(self, run_time_s: float) -> ShapeTick | None:
        if run_time_s >= self.duration_s:
            return None
        target = max(1, math.ceil(self.users * run_time_s / self.duration_s))
        # Spawning must keep up with the ramp, else the ramp is the spawn rate's, not ours.
        return ShapeTick(min(self.users, target), max(self.spawn_rate, self.users / self.duration_s))


@dataclass(frozen=True)
class StepShape:
    """`steps` equal plateaus from users/steps up to `users`."""

    users: int
    spawn_rate: float
    duration_s: float
    steps: int

    def tick(self, run_time_s: float) -> ShapeTick | None:
        if run_time_s >= self.duration_s:
            return None
        step = min(self.steps - 1, int(run_time_s / (self.duration_s / self.steps)))
        return ShapeTick(max(1, math.ceil(self.users * (step + 1) / self.steps)), self.spawn_rate)


@dataclass(frozen=True)
class SpikeShape:
    """A baseline, a sudden jump to `users` for a while, then back: how the server absorbs a burst."""

    users: int
    spawn_rate: float
    duration_s: float
    spike_start: float
    spike_length: float
    baseline_fraction: float

    def tick(self, run_time_s: float) -> ShapeTick | None:
        if run_time_s >= self.duration_s:
            return None
        start = self.spike_start * self.duration_s
        in_spike = start <= run_time_s < start + self.spike_length * self.duration_s
        if in_spike:
            # A spike is sudden by definition: all its users start within about a second.
            return ShapeTick(self.users, max(self.spawn_rate, float(self.users)))
        return ShapeTick(max(1, math.floor(self.users * self.baseline_fraction)), max(self.spawn_rate, 1.0))


@dataclass(frozen=True)
class ArrivalRateShape:
    """A pool of self-pacing users that together offer `target_rps` (open-loop approximation).

    Each user sends at target_rps / pool; the offered rate holds while latency < pool / target_rps
    and falls below it beyond that, which the report shows as achieved vs target rate.
    """

    pool: int
    spawn_rate: float
    duration_s: float
    target_rps: float

    @property
    def per_user_rps(self) -> float:
        return self.target_rps / self.pool

    def tick(self, run_time_s: float) -> ShapeTick | None:
        if run_time_s >= self.duration_s:
            return None
        # The whole pool starts at once: users stagger their first request themselves.
        return ShapeTick(self.pool, max(self.spawn_rate, float(self.pool)))


def plan_for(settings: ShapeSettings) -> ShapePlan:
    """The schedule for the settings' shape kind."""
    s = settings
    match s.kind:
        case "constant":
            return ConstantShape(s.users, s.spawn_rate, s.duration_s)
        case "ramp":
            return RampShape(s.users, s.spawn_rate, s.duration_s)
        case "step":
            return StepShape(s.users, s.spawn_rate, s.duration_s, s.steps)
        case "spike":
            return SpikeShape(
                s.users, s.spawn_rate, s.duration_s, s.spike_start, s.spike_length, s.baseline_fraction
            )
        case "arrival-rate":
            assert s.target_rps is not None  # ShapeSettings validates this
            return ArrivalRateShape(s.pool_users(), s.spawn_rate, s.duration_s, s.target_rps)


def per_user_rate(settings: ShapeSettings) -> float | None:
    """Requests per second each user paces itself to (arrival-rate), else None (closed loop)."""
    if settings.kind != "arrival-rate":
        return None
    assert settings.target_rps is not None
    return settings.target_rps / settings.pool_users()
