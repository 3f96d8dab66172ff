"""Retries with exponential backoff + jitter, only for failures a retry can fix.

A server that is restarting or briefly overloaded answers UNAVAILABLE (gRPC) / 502-504 (HTTP) or
refuses / resets connections: retrying after a pause succeeds. A request the server judged invalid
(INVALID_ARGUMENT / 400, unknown model) fails the same way every time: it is raised at once.
Timeouts are not retried: the request may still be running, and retrying piles load on a slow server.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triton_bundle.client.errors import (
    ClientError,
    ClientTimeoutError,
    ServerRejectedError,
    ServerUnavailableError,
)

T = TypeVar("T")

_RETRYABLE_STATUSES = frozenset({"StatusCode.UNAVAILABLE", "502", "503", "504"})
_TIMEOUT_STATUSES = frozenset({"StatusCode.DEADLINE_EXCEEDED", "408"})


class Failure(enum.Enum):
    RETRYABLE = "retryable"
    TIMEOUT = "timeout"
    FATAL = "fatal"


def classify_failure(exc: BaseException) -> Failure:
    """Sort an exception from a transport call into retryable / timeout / fatal."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = exc.status()
        if status in _RETRYABLE_STATUSES:
            return Failure.RETRYABLE
        if status in _TIMEOUT_STATUSES:
            return Failure.TIMEOUT
        return Failure.FATAL
    # Order matters: aiohttp's ServerTimeoutError is both a TimeoutError and a connection error.
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Failure.TIMEOUT
    if isinstance(exc, ConnectionError | EOFError):
        return Failure.RETRYABLE
    if _is_aiohttp_connection_error(exc) or _is_http_parse_error(exc):
        return Failure.RETRYABLE
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError):
        return Failure.RETRYABLE  # socket-level errors: EHOSTUNREACH, ENETUNREACH, EPIPE, ...
    return Failure.FATAL


def _is_aiohttp_connection_error(exc: BaseException) -> bool:
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp ships with tritonclient[http]
        return False
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)


def _is_http_parse_error(exc: BaseException) -> bool:
    """geventhttpclient raises this when a server dies mid-response (truncated status line)."""
    try:
        from geventhttpclient.response import HTTPParseError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, HTTPParseError)


class RetryPolicy(BaseModel):
    """How hard to try: bounded attempts AND bounded total time, whichever ends first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: Annotated[int, Field(ge=1)] = 6
    initial_backoff_s: Annotated[float, Field(ge=0)] = 0.2
    max_backoff_s: Annotated[float, Field(ge=0)] = 5.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.5
    max_total_s: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.initial_backoff_s > self.max_backoff_s:
            raise ValueError(
                f"initial_backoff_s {self.initial_backoff_s} exceeds max_backoff_s {self.max_backoff_s}"
            )
        return self

    @classmethod
    def never(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff_s(self, retry_number: int, rng: random.Random) -> float:
        """Pause before retry `retry_number` (1-based): exponential, capped, with jitter taken off so
        that clients restarted together do not retry in lockstep."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry_number - 1))
        return base * (1.0 - self.jitter * rng.random())


@dataclass
class RetryEvent:
    """Passed to `on_retry` before each pause: what failed and how long we wait."""

    what: str
    attempt: int
    delay_s: float
    error: BaseException


OnRetry = Callable[[RetryEvent], None]


class RetryBudget:
    """The bookkeeping of one retried call, shared by the sync and asyncio loops."""

    def __init__(
        self,
        policy: RetryPolicy,
        what: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.what = what
        self.attempt = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._started = clock()

    def next_delay(self, exc: BaseException) -> float:
        """The pause before the next attempt, or raise the error the caller should see."""
        if isinstance(exc, ClientError):
            raise exc
        kind = classify_failure(exc)
        if kind is Failure.FATAL:
            raise _rejected(self.what, exc) from None
        if kind is Failure.TIMEOUT:
            raise ClientTimeoutError(
                f"{self.what} timed out: {_describe(exc)}; raise the client timeout if the model is slow"
            ) from exc
        elapsed = self._clock() - self._started
        delay = self.policy.backoff_s(self.attempt, self._rng)
        if self.attempt >= self.policy.max_attempts or elapsed + delay > self.policy.max_total_s:
            raise ServerUnavailableError(
                f"{self.what} failed after {self.attempt} attempt(s) over {elapsed:.1f} s "
                f"(retry limit: {self.policy.max_attempts} attempts / {self.policy.max_total_s:g} s): "
                f"{_describe(exc)}; is the server running and ready?"
            ) from exc
        return delay


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 400 else text[:400] + "..."


def _rejected(what: str, exc: BaseException) -> ClientError:
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        return ServerRejectedError(f"{what} was rejected by the server: {_describe(exc)}", exc.status())
    return ServerRejectedError(f"{what} failed: {type(exc).__name__}: {_describe(exc)}")


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    *,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Call `fn` until it succeeds, a fatal error occurs, or the policy's budget is spent."""
    budget = RetryBudget(policy, what, clock=clock, rng=rng)
    while True:
        budget.attempt += 1
        try:
            return fn()
        except Exception as exc:
            delay = budget.next_delay(exc)
            if on_retry is not None:
                on_retry(RetryEvent(what, budget.attempt, delay, exc))
            sleep(delay)


async def acall_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    what: str,
    *,
    on_retry: OnRetry | None = None,
    rng: random.Random | None = None,
) -> T:
    """The asyncio twin of `call_with_retry`."""
    budget = RetryBudget(policy, what, rng=rng)
    while True:
        budget.attempt += 1
        try:
            return await fn()
        except Exception as exc:
            delay = budget.next_delay(exc)
            if on_retry is not None:
                on_retry(RetryEvent(what, budget.attempt, delay, exc))
            await asyncio.sleep(delay)
