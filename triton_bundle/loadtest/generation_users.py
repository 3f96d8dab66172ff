"""Locust users for text generation: each request streams one generation and times every token.

HTTP streams over Triton's generate extension (`POST /v2/models/<m>/generate_stream`, server-sent
events); gRPC over a bidirectional stream (tritonclient's `start_stream` / `async_stream_infer`, with
gevent-cooperative gRPC set up by the locustfile). A request is one Locust `request` event (its latency
and the token count as response_length); time to first token, every inter-token gap and the stream's
tokens/s go to this process's GenerationStats (custom stats the master merges).

A stream counts as failed when the server sends an error, when no token arrives, or when it ends without
its final response.
"""

from __future__ import annotations

import queue
import time
from typing import Any, ClassVar

import gevent
import numpy as np
from locust import task
from locust.runners import WorkerRunner

from triton_bundle.loadtest.generation import StreamRecord, record_from_arrivals, sse_events
from triton_bundle.loadtest.locust_process import generation_stats
from triton_bundle.loadtest.settings import GenerationSettings
from triton_bundle.loadtest.users import (
    IDLE_WHEN_CAPPED_S,
    PAUSE_WHEN_UNREACHABLE_S,
    BundleUser,
    ResponseCheckError,
    server_unreachable,
)
from triton_bundle.redact import redact

TEXT_OUTPUT = "text_output"
_FINAL_PARAMETER = "triton_final_response"


class StreamError(Exception):
    """The server ended a generation with an error (its message follows)."""


def request_fields(prompt: str, generation: GenerationSettings) -> dict[str, Any]:
    """The contract's inputs for one streamed generation (JSON names = tensor names)."""
    fields: dict[str, Any] = {"text_input": prompt, "max_tokens": generation.max_tokens, "stream": True}
    if generation.temperature is not None:
        fields["temperature"] = generation.temperature
    if generation.seed is not None:
        fields["seed"] = generation.seed
    return fields


class GenerationUser(BundleUser):
    """Shared behaviour; subclasses supply `_stream(prompt) -> token arrival times`."""

    abstract = True
    request_type: ClassVar[str] = "STREAM"

    @task
    def generate(self) -> None:
        state = self.state
        if not state.budget.take():
            gevent.sleep(IDLE_WHEN_CAPPED_S)  # the cap is spent: idle until the master stops the run
            return
        prompt = state.workload.prompt(self.rng)
        sent_at = time.perf_counter()
        arrivals: list[float] = []
        exception: Exception | None = None
        try:
            self._stream(prompt, arrivals)
            if not arrivals:
                raise ResponseCheckError("the stream ended without a single token")
        except Exception as exc:  # every failure is a measurement, not a crash of the user
            exception = _without_prompt(exc, prompt)
        ended_at = time.perf_counter()
        record: StreamRecord = record_from_arrivals(sent_at, arrivals, ended_at)
        if exception is None:
            generation_stats().record(self.user_key, record, time.time())
        self.environment.events.request.fire(
            request_type=self.request_type,
            name=state.settings.model,
            response_time=record.latency_ms,
            response_length=record.tokens,
            exception=exception,
            context={"ttft_ms": record.ttft_ms, "tokens": record.tokens},
        )
        if exception is not None and server_unreachable(exception):
            gevent.sleep(PAUSE_WHEN_UNREACHABLE_S)

    @property
    def user_key(self) -> str:
        # Unique across worker processes: the master merges every worker's per-user counts.
        runner = self.environment.runner
        worker = runner.client_id if isinstance(runner, WorkerRunner) else "local"
        return f"{worker}/{self.user_number}"

    @property
    def generation(self) -> GenerationSettings:
        settings = self.state.settings.generation
        if settings is None:
            raise ResponseCheckError("generation users need settings.generation (a text-generation spec)")
        return settings

    def _stream(self, prompt: str, arrivals: list[float]) -> None:
        raise NotImplementedError


def _without_prompt(exc: Exception, prompt: str) -> Exception:
    """Reports never quote a request's text: a server error echoing the prompt gets its fingerprint."""
    message = str(exc)
    cleaned = redact(message, [prompt])
    return exc if cleaned == message else StreamError(f"{type(exc).__name__}: {cleaned}")


class GenerationHttpUser(GenerationUser):
    """Triton's generate extension over HTTP: one SSE event per token."""

    abstract = True
    request_type = "HTTP-SSE"

    def _connect(self) -> Any:
        import requests  # gevent-patched by Locust: sockets yield to other users while waiting

        session = requests.Session()
        settings = self.state.settings
        self.stream_url = f"http://{settings.endpoint.url}/v2/models/{settings.model}/generate_stream"
        return session

    def _stream(self, prompt: str, arrivals: list[float]) -> None:
        body = request_fields(prompt, self.generation)
        timeout = self.state.settings.request_timeout_s
        with self.client.post(
            self.stream_url, json=body, stream=True, timeout=timeout, headers=self.auth or None
        ) as response:
            if response.status_code != 200:
                raise StreamError(f"HTTP {response.status_code}: {response.text[:300]}")
            for event in sse_events(response.iter_content(chunk_size=None)):
                if "error" in event:
                    raise StreamError(str(event["error"]))
                if event.get(TEXT_OUTPUT):
                    arrivals.append(time.perf_counter())


class GenerationGrpcUser(GenerationUser):
    """gRPC bidirectional streaming: one response per token, then the final response."""

    abstract = True
    request_type = "gRPC-stream"

    def _connect(self) -> Any:
        import tritonclient.grpc as grpcclient

        self._grpc = grpcclient
        self._responses: queue.Queue = queue.Queue()  # gevent-patched: get() yields to other users
        client = grpcclient.InferenceServerClient(self.state.settings.endpoint.url)
        client.start_stream(
            callback=lambda result, error: self._responses.put((result, error)),
            headers=self.auth or None,  # the proxy's bearer token travels as stream metadata
        )
        self._requests_sent = 0
        return client

    def on_stop(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.stop_stream(cancel_requests=True)
        super().on_stop()

    def _inputs(self, prompt: str) -> list[Any]:
        dtypes = {"text_input": ("BYTES", object), "max_tokens": ("INT32", np.int32)}
        dtypes |= {
            "stream": ("BOOL", bool),
            "temperature": ("FP32", np.float32),
            "seed": ("UINT64", np.uint64),
        }
        shape = [1, 1] if self.generation.batched else [1]
        tensors = []
        for name, value in request_fields(prompt, self.generation).items():
            datatype, dtype = dtypes[name]
            item = value.encode("utf-8") if isinstance(value, str) else value
            tensor = self._grpc.InferInput(name, shape, datatype)
            tensor.set_data_from_numpy(np.array([item], dtype=dtype).reshape(shape))
            tensors.append(tensor)
        return tensors

    def _stream(self, prompt: str, arrivals: list[float]) -> None:
        while not self._responses.empty():  # late answers to an earlier stream that timed out
            self._responses.get_nowait()
        self._requests_sent += 1
        request_id = str(self._requests_sent)
        self.client.async_stream_infer(
            self.state.settings.model,
            self._inputs(prompt),
            request_id=request_id,
            enable_empty_final_response=True,
        )
        deadline = time.monotonic() + self.state.settings.request_timeout_s
        while True:
            try:
                result, error = self._responses.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise StreamError(
                    f"no final response within {self.state.settings.request_timeout_s:g} s"
                ) from None
            if error is not None:
                raise StreamError(str(error))
            if result.get_response().id not in ("", request_id):
                continue
            text = result.as_numpy(TEXT_OUTPUT)
            if text is not None and text.size and any(bytes(t) for t in text.reshape(-1)):
                arrivals.append(time.perf_counter())
            final = result.get_response().parameters.get(_FINAL_PARAMETER)
            if final is not None and final.bool_param:
                return
