"""Locust users that call a Triton model over HTTP or gRPC with requests drawn from the workload.

One user is one client with its own connection. Closed loop by default (next request when the last
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

from triton_bundle.bearer import auth_headers
from triton_bundle.loadtest.locust_process import ProcessState, process_state
from triton_bundle.loadtest.shapes import per_user_rate
from triton_bundle.loadtest.workload import InputArray
from triton_bundle.redact import redact

IDLE_WHEN_CAPPED_S = 0.25
# A server that is down refuses connections in microseconds: without a pause each user would spin,
# burning the load generator's CPU and flooding the run with failures that say nothing new.
PAUSE_WHEN_UNREACHABLE_S = 0.5


class ResponseCheckError(Exception):
    """The server answered, but not with what the request asked for."""


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
    """One inference per request; subclasses supply the transport (`_connect`, `_infer`)."""

    abstract = True

    @task
    def infer(self) -> None:
        settings = self.state.settings
        if not self.state.budget.take():
            # The cap is spent: stay idle until the master stops the run.
            gevent.sleep(IDLE_WHEN_CAPPED_S)
            return
        inputs = self.state.workload.make_batch(self.rng, settings.request_batch_size)
        start = time.perf_counter()
        exception: Exception | None = None
        length = 0
        try:
            length = self._check(self._infer(inputs), settings.request_batch_size)
        except Exception as exc:  # every failure is a measurement, not a crash of the user
            exception = _without_payloads(exc, inputs)
        self.environment.events.request.fire(
            request_type=self.request_type,
            name=settings.model,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exception,
            context={"batch_size": settings.request_batch_size},
        )
        if exception is not None and server_unreachable(exception):
            gevent.sleep(PAUSE_WHEN_UNREACHABLE_S)

    def _check(self, result: Any, batch_size: int) -> int:
        """Every requested output is present with the request's batch size; returns the bytes received."""
        names = self.state.settings.outputs
        size = 0
        for name in names:
            array = result.as_numpy(name)
            if array is None:
                raise ResponseCheckError(f"output '{name}' missing from the response")
            if array.ndim == 0 or array.shape[0] != batch_size:
                raise ResponseCheckError(
                    f"output '{name}' has shape {list(array.shape)}; expected batch dim {batch_size}"
                )
            size += int(array.nbytes)
        return size

    def _infer(self, inputs: list[InputArray]) -> Any:
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


class TritonHttpUser(TritonUser):
    """HTTP/REST (KServe v2) with binary tensors; tritonclient.http is gevent-native."""

    abstract = True
    request_type = "HTTP"

    def _connect(self) -> Any:
        import tritonclient.http as httpclient

        timeout = self.state.settings.request_timeout_s
        self._http = httpclient
        return httpclient.InferenceServerClient(
            self.state.settings.endpoint.url, connection_timeout=timeout, network_timeout=timeout
        )

    def _infer(self, inputs: list[InputArray]) -> Any:
        tensors = []
        for item in inputs:
            tensor = self._http.InferInput(item.name, list(item.array.shape), item.datatype)
            tensor.set_data_from_numpy(item.array, binary_data=True)
            tensors.append(tensor)
        outputs = [self._http.InferRequestedOutput(n, binary_data=True) for n in self.state.settings.outputs]
        return self.client.infer(
            self.state.settings.model, tensors, outputs=outputs or None, headers=self.auth or None
        )


class TritonGrpcUser(TritonUser):
    """gRPC. The locustfile calls grpc.experimental.gevent.init_gevent() before any channel exists:
    without it gRPC's own threads block the gevent loop and throughput collapses."""

    abstract = True
    request_type = "gRPC"

    def _connect(self) -> Any:
        import tritonclient.grpc as grpcclient

        self._grpc = grpcclient
        return grpcclient.InferenceServerClient(self.state.settings.endpoint.url)

    def _infer(self, inputs: list[InputArray]) -> Any:
        tensors = []
        for item in inputs:
            tensor = self._grpc.InferInput(item.name, list(item.array.shape), item.datatype)
            tensor.set_data_from_numpy(item.array)
            tensors.append(tensor)
        outputs = [self._grpc.InferRequestedOutput(n) for n in self.state.settings.outputs]
        return self.client.infer(
            self.state.settings.model,
            tensors,
            outputs=outputs or None,
            client_timeout=self.state.settings.request_timeout_s,
            headers=self.auth or None,
        )
