"""Locust users that call a Triton model over HTTP or gRPC with requests drawn from the workload.

One user is one client: over HTTP with its own connection (Locust's FastHttpUser), over gRPC sharing
its process's channel. Requests are built once per input and reused (prepared.py). Closed loop by default (next request when the last
answered, plus think time); under the arrival-rate shape each user paces itself to its share of the
target rate. A response counts as a failure when Triton errors or when an output's batch dimension does
not match the request, so a server that answers wrongly cannot pass the gate.
"""

from __future__ import annotations

import random
import time
from typing import Any, ClassVar

import gevent
from locust import User, task
from locust.contrib.fasthttp import FastHttpUser

from triton_bundle.bearer import auth_headers
from triton_bundle.loadtest.locust_process import ProcessState, process_state
from triton_bundle.loadtest.prepared import (
    HEADER_LENGTH,
    PreparedCache,
    ResponseCheckError,  # noqa: F401 - re-exported for the generation users
    check_grpc,
    check_http,
    grpc_error,
    grpc_request,
    http_error,
    http_request,
)
from triton_bundle.loadtest.settings import strip_scheme
from triton_bundle.loadtest.shapes import per_user_rate
from triton_bundle.loadtest.workload import InputArray
from triton_bundle.redact import redact

IDLE_WHEN_CAPPED_S = 0.25
# A server that is down refuses connections in microseconds: without a pause each user would spin,
# burning the load generator's CPU and flooding the run with failures that say nothing new.
PAUSE_WHEN_UNREACHABLE_S = 0.5


class BundleUser(User):
    """What every simulated client shares: settings, its own random stream and connection, pacing.

    No task here: Locust collects @task methods from every base class, so each request kind is a
    subclass with its own task (TritonUser: one inference; generation users: one stream).
    """

    abstract = True
    request_type: ClassVar[str] = "INFER"
    _users_started: ClassVar[int] = 0

    def on_start(self) -> None:
        self.state: ProcessState = process_state(self.environment)
        settings = self.state.settings
        BundleUser._users_started += 1
        self.user_number = BundleUser._users_started
        # Distinct, reproducible request streams per user.
        self.rng = random.Random(settings.seed * 1_000_003 + BundleUser._users_started)
        self.auth = auth_headers()  # the proxy's bearer token, when TRITON_BEARER_TOKEN(_FILE) is set
        self.client: Any = self._connect()
        self.interval_s: float | None = None
        rate = per_user_rate(settings.shape)
        if rate:
            self.interval_s = 1.0 / rate
            # Random phase: users started together must not fire in lockstep.
            gevent.sleep(self.rng.uniform(0, self.interval_s))
            self.next_at = time.monotonic()

    def on_stop(self) -> None:
        close = getattr(getattr(self, "client", None), "close", None)
        if close is not None:
            close()

    def wait_time(self) -> float:
        if self.interval_s is None:
            return self.state.settings.think_time_s
        now = time.monotonic()
        # Behind schedule (slow responses): start again from now instead of bursting to catch up.
        self.next_at = max(self.next_at + self.interval_s, now)
        return self.next_at - now

    def _connect(self) -> Any:
        raise NotImplementedError


class TritonUser(BundleUser):
    """One inference per request; subclasses supply the transport (`_send`: send, check, report)."""

    abstract = True

    @task
    def infer(self) -> None:
        settings = self.state.settings
        if not self.state.budget.take():
            # The cap is spent: stay idle until the master stops the run.
            gevent.sleep(IDLE_WHEN_CAPPED_S)
            return
        inputs = self.state.workload.make_batch(self.rng, settings.request_batch_size)
        exception = self._send(inputs)
        if exception is not None and server_unreachable(exception):
            gevent.sleep(PAUSE_WHEN_UNREACHABLE_S)

    def _send(self, inputs: list[InputArray]) -> Exception | None:
        """Send one request, check its answer, fire Locust's request event; returns the failure."""
        raise NotImplementedError


class RequestFailedError(Exception):
    """A failed request, its message stripped of the request's texts (reports must not quote payloads)."""


def _without_payloads(exc: Exception, inputs: list[InputArray]) -> Exception:
    texts = [v for item in inputs if item.array.dtype == object for v in item.array.ravel().tolist()]
    message = str(exc)
    cleaned = redact(message, texts)
    if cleaned == message:
        return exc  # keep the original: the unreachable-server check reads its type
    return RequestFailedError(f"{type(exc).__name__}: {cleaned}")


def server_unreachable(exc: Exception) -> bool:
    """Connection refused / reset / closed, gRPC UNAVAILABLE, HTTP 502-504: the server, not the request."""
    from triton_bundle.client.retry import Failure, classify_failure

    return classify_failure(exc) is Failure.RETRYABLE


class TritonHttpUser(TritonUser, FastHttpUser):
    """HTTP/REST (KServe v2, binary tensors) on Locust's FastHttpUser (geventhttpclient).

    The request body is built once per input and reused; the answer is checked from its JSON header
    (output names and shapes) without decoding the tensors. Locust's session times the request.
    """

    abstract = True
    request_type = "HTTP"
    concurrency = 1  # one request in flight per user: a closed loop, like perf_analyzer's

    def __init__(self, environment: Any) -> None:
        # FastHttpUser reads these at construction; they come from the run's settings, not the CLI.
        settings = process_state(environment).settings
        self.host = f"http://{strip_scheme(settings.endpoint.url)}"
        self.network_timeout = self.connection_timeout = settings.request_timeout_s
        super().__init__(environment)

    def _connect(self) -> Any:
        settings = self.state.settings
        self.path = f"/v2/models/{settings.model}/infer"
        return self.client  # FastHttpSession, made by FastHttpUser

    def _send(self, inputs: list[InputArray]) -> Exception | None:
        settings = self.state.settings
        prepared = _HTTP_REQUESTS.get(inputs, lambda i: http_request(i, settings.outputs, self.auth))
        exception: Exception | None = None
        with self.client.request(
            "POST",
            self.path,
            name=settings.model,
            data=prepared.body,
            headers=prepared.headers,
            catch_response=True,
            context={"batch_size": settings.request_batch_size},
        ) as response:
            response.request_meta["request_type"] = self.request_type
            error = getattr(response, "error", None)  # set by Locust when the request itself failed
            try:
                if not response.status_code:  # no answer: refused, reset, timed out
                    raise error or ConnectionError("no response from the server")
                if response.status_code != 200:
                    raise http_error(response.status_code, response.content or b"")
                if error is not None:
                    raise error
                header_length = response.headers.get(HEADER_LENGTH) if response.headers else None
                check_http(response.content, header_length, settings.outputs, settings.request_batch_size)
            except Exception as exc:  # every failure is a measurement, not a crash of the user
                exception = _without_payloads(exc, inputs)
                response.failure(exception)
            else:
                response.success()
        return exception


class TritonGrpcUser(TritonUser):
    """gRPC with one channel per Locust process (HTTP/2 multiplexes the users' calls) and requests
    built once per input. The locustfile calls grpc.experimental.gevent.init_gevent() before any
    channel exists: without it gRPC's own threads block the gevent loop and throughput collapses."""

    abstract = True
    request_type = "gRPC"

    def _connect(self) -> Any:
        self.metadata = tuple(self.auth.items()) or None
        return _grpc_stub(self.state.settings.endpoint.url)

    def _send(self, inputs: list[InputArray]) -> Exception | None:
        settings = self.state.settings
        request = _GRPC_REQUESTS.get(inputs, lambda i: grpc_request(settings.model, i, settings.outputs))
        start = time.perf_counter()
        exception: Exception | None = None
        length = 0
        try:
            response = self.client.ModelInfer(
                request, metadata=self.metadata, timeout=settings.request_timeout_s
            )
            check_grpc(response, settings.outputs, settings.request_batch_size)
            length = sum(len(raw) for raw in response.raw_output_contents)
        except Exception as exc:  # every failure is a measurement, not a crash of the user
            exception = _without_payloads(grpc_error(exc), inputs)
        self.environment.events.request.fire(
            request_type=self.request_type,
            name=settings.model,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exception,
            context={"batch_size": settings.request_batch_size},
        )
        return exception


_HTTP_REQUESTS = PreparedCache()
_GRPC_REQUESTS = PreparedCache()
_GRPC_STUBS: dict[str, Any] = {}


def _grpc_stub(url: str) -> Any:
    """This process's stub on one shared channel to `url` (message sizes as tritonclient sets them)."""
    if url not in _GRPC_STUBS:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        limit = 2**31 - 1
        channel = grpc.insecure_channel(
            strip_scheme(url),
            options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
        )
        _GRPC_STUBS[url] = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    return _GRPC_STUBS[url]
