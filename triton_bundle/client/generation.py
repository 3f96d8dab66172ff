"""Text generation against a served decoder: whole text or a token stream, over HTTP or gRPC, sync or async.

HTTP uses Triton's generate extension (`/v2/models/<m>/generate` and `/generate_stream`, server-sent
events); gRPC uses the bidirectional streaming RPC. Each streamed chunk is one generated token's text.

from triton_bundle.client.generation import TextGenerator
gen = TextGenerator("grpc://127.0.0.1:8101")
for chunk in gen.stream("support-gpt", "Thanks for reaching out", max_tokens=32):
    print(chunk.text, end="", flush=True)
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import numpy as np

from triton_bundle.client.connection import Endpoint, parse_endpoint
from triton_bundle.client.errors import (
    ClientError,
    InvalidInputError,
    ServerRejectedError,
    ServerUnavailableError,
)


@dataclass(frozen=True)
class GenerationRequest:
    """The decoder contract's inputs; None leaves a sampling value at the server's default (greedy)."""

    prompt: str
    max_tokens: int
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def fields(self, stream: bool) -> dict[str, object]:
        values: dict[str, object] = {
            "text_input": self.prompt,
            "max_tokens": self.max_tokens,
            "stream": stream,
        }
        for name in ("temperature", "top_k", "top_p", "seed"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        if self.stop:
            values["stop"] = list(self.stop)
        return values


@dataclass(frozen=True)
class TokenChunk:
    text: str
    index: int  # 0 for the first generated token
    at_s: float  # seconds since the request was sent


@dataclass
class Generation:
    """A finished generation and its timings (streamed: per token; whole text: end to end only)."""

    text: str
    tokens: int
    total_s: float
    ttft_s: float | None = None
    token_times_s: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s if self.total_s > 0 else 0.0

    @property
    def inter_token_s(self) -> list[float]:
        return [b - a for a, b in zip(self.token_times_s, self.token_times_s[1:], strict=False)]

    @classmethod
    def collect(cls, chunks: Iterator[TokenChunk], started: float | None = None) -> Generation:
        started = time.perf_counter() if started is None else started
        parts, times = [], []
        for chunk in chunks:
            parts.append(chunk.text)
            times.append(chunk.at_s)
        total = time.perf_counter() - started
        return cls("".join(parts), len(times), total, times[0] if times else None, times)


_TYPES = {"text_input": "BYTES", "max_tokens": "INT32", "temperature": "FP32", "top_k": "INT32",
          "top_p": "FP32", "seed": "UINT64", "stop": "BYTES", "stream": "BOOL"}  # fmt: skip
_NUMPY = {"BYTES": np.object_, "INT32": np.int32, "FP32": np.float32, "UINT64": np.uint64, "BOOL": np.bool_}


def _grpc_inputs(request: GenerationRequest, stream: bool, module) -> list:
    inputs = []
    for name, value in request.fields(stream).items():
        dtype = _TYPES[name]
        values = value if isinstance(value, list) else [value]
        if dtype == "BYTES":
            values = [str(v).encode("utf-8") for v in values]
        array = np.array(values, dtype=_NUMPY[dtype])
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


# The decoder model starts a refused request's message with this (gRPC stream errors carry no code).
INVALID_PREFIX = "invalid request: "


def _error(message: str, status: int | str | None = None) -> ClientError:
    invalid = message.startswith(INVALID_PREFIX) or status == 400 or "INVALID_ARG" in str(status)
    if invalid:
        return InvalidInputError(f"the server refused the request: {message}")
    return ServerRejectedError(f"generation failed: {message}", str(status) if status else None)


def _sse_payload(line: bytes | str) -> dict | None:
    text = line.decode("utf-8") if isinstance(line, bytes) else line
    if not text.startswith("data:"):
        return None
    return json.loads(text[5:].strip())


def _text_of(result) -> tuple[str | None, bool]:
    """(text or None when the response carries none, final flag) of one gRPC stream response."""
    response = result.get_response()
    final = response.parameters.get("triton_final_response")
    is_final = bool(final and final.bool_param)
    if not response.outputs:
        return None, is_final
    value = result.as_numpy("text_output").reshape(-1)
    return b"".join(v if isinstance(v, bytes) else str(v).encode() for v in value).decode("utf-8"), is_final


class _GeneratorBase:
    """Where the server is and how long one generation may take; shared by the sync and async clients."""

    def __init__(
        self, url: str = "127.0.0.1:8000", protocol: str | None = None, timeout_s: float = 300.0
    ) -> None:
        self.endpoint: Endpoint = parse_endpoint(url, protocol)
        self.timeout_s = timeout_s


class TextGenerator(_GeneratorBase):
    """Blocking generation client. `stream()` yields TokenChunks as the server sends them."""

    def stream(self, model: str, prompt: str, max_tokens: int, **sampling) -> Iterator[TokenChunk]:
        request = GenerationRequest(prompt, max_tokens, **sampling)
        if self.endpoint.protocol == "http":
            return self._http_stream(model, request)
        return self._grpc_stream(model, request)

    def generate(self, model: str, prompt: str, max_tokens: int, **sampling) -> Generation:
        """The whole text in one response (HTTP /generate, or one gRPC stream response)."""
        request = GenerationRequest(prompt, max_tokens, **sampling)
        started = time.perf_counter()
        if self.endpoint.protocol == "http":
            text = self._http_generate(model, request)
        else:
            text = "".join(c.text for c in self._grpc_stream(model, request, stream=False))
        return Generation(text=text, tokens=0, total_s=time.perf_counter() - started)

    def _http_generate(self, model: str, request: GenerationRequest) -> str:
        import requests

        url = f"{self._base()}/v2/models/{model}/generate"
        try:
            reply = requests.post(url, json=request.fields(False), timeout=self.timeout_s)
        except requests.ConnectionError as exc:
            raise ServerUnavailableError(f"cannot reach {self.endpoint}: {exc}") from None
        body = reply.json() if reply.content else {}
        if reply.status_code != 200:
            raise _error(body.get("error", reply.text), reply.status_code)
        return str(body.get("text_output", ""))

    def _base(self) -> str:
        return f"{'https' if self.endpoint.ssl else 'http'}://{self.endpoint.address}"

    def _http_stream(self, model: str, request: GenerationRequest) -> Iterator[TokenChunk]:
        import requests

        url = f"{self._base()}/v2/models/{model}/generate_stream"
        started = time.perf_counter()
        try:
            reply = requests.post(url, json=request.fields(True), stream=True, timeout=self.timeout_s)
        except requests.ConnectionError as exc:
            raise ServerUnavailableError(f"cannot reach {self.endpoint}: {exc}") from None
        with reply:
            if reply.status_code != 200:
                raise _error(_error_text(reply.text), reply.status_code)
            index = 0
            for line in reply.iter_lines(chunk_size=None):  # None: yield events as they arrive
                payload = _sse_payload(line) if line else None
                if payload is None:
                    continue
                if "error" in payload:
                    raise _error(payload["error"])
                if "text_output" in payload:
                    yield TokenChunk(payload["text_output"], index, time.perf_counter() - started)
                    index += 1

    def _grpc_stream(
        self, model: str, request: GenerationRequest, stream: bool = True
    ) -> Iterator[TokenChunk]:
        import tritonclient.grpc as grpcclient

        results: queue.Queue = queue.Queue()
        client = grpcclient.InferenceServerClient(self.endpoint.address, ssl=self.endpoint.ssl)
        started = time.perf_counter()
        try:
            client.start_stream(callback=lambda result, error: results.put((result, error)))
            client.async_stream_infer(
                model, _grpc_inputs(request, stream, grpcclient), enable_empty_final_response=True
            )
            index = 0
            while True:
                result, error = results.get(timeout=self.timeout_s)
                if error is not None:
                    raise _error(error.message(), error.status())
                text, final = _text_of(result)
                if text is not None:
                    yield TokenChunk(text, index, time.perf_counter() - started)
                    index += 1
                if final:
                    return
        except queue.Empty:
            raise ServerUnavailableError(f"no response from {self.endpoint} in {self.timeout_s:g}s") from None
        finally:
            # Closing early (a consumer that stops reading) cancels the request: the server frees its slot.
            client.stop_stream(cancel_requests=True)
            client.close()


def _error_text(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except (ValueError, AttributeError):
        return body


class AsyncTextGenerator(_GeneratorBase):
    """asyncio generation client: `stream()` is an async iterator of TokenChunks."""

    async def generate(self, model: str, prompt: str, max_tokens: int, **sampling) -> Generation:
        started = time.perf_counter()
        parts = [c.text async for c in self.stream(model, prompt, max_tokens, **sampling)]
        return Generation("".join(parts), len(parts), time.perf_counter() - started)

    def stream(self, model: str, prompt: str, max_tokens: int, **sampling) -> AsyncIterator[TokenChunk]:
        request = GenerationRequest(prompt, max_tokens, **sampling)
        if self.endpoint.protocol == "http":
            return self._http_stream(model, request)
        return self._grpc_stream(model, request)

    async def _http_stream(self, model: str, request: GenerationRequest) -> AsyncIterator[TokenChunk]:
        import aiohttp

        url = f"{'https' if self.endpoint.ssl else 'http'}://{self.endpoint.address}/v2/models/{model}/generate_stream"
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json=request.fields(True)) as reply,
        ):
            if reply.status != 200:
                raise _error(_error_text(await reply.text()), reply.status)
            index = 0
            async for line in reply.content:
                payload = _sse_payload(line.strip())
                if payload is None:
                    continue
                if "error" in payload:
                    raise _error(payload["error"])
                if "text_output" in payload:
                    yield TokenChunk(payload["text_output"], index, time.perf_counter() - started)
                    index += 1

    async def _grpc_stream(self, model: str, request: GenerationRequest) -> AsyncIterator[TokenChunk]:
        import tritonclient.grpc as grpcclient
        import tritonclient.grpc.aio as aio

        client = aio.InferenceServerClient(self.endpoint.address, ssl=self.endpoint.ssl)
        started = time.perf_counter()

        async def requests():
            yield {
                "model_name": model,
                "inputs": _grpc_inputs(request, True, grpcclient),
                "enable_empty_final_response": True,
            }

        try:
            index = 0
            async for result, error in client.stream_infer(requests(), stream_timeout=self.timeout_s):
                if error is not None:
                    raise _error(error.message(), error.status())
                text, final = _text_of(result)
                if text is not None:
                    yield TokenChunk(text, index, time.perf_counter() - started)
                    index += 1
                if final:
                    return
        finally:
            await client.close()
