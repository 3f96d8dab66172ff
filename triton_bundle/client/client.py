"""TritonClient (blocking) and AsyncTritonClient (asyncio): one API over HTTP and gRPC.

Every inference goes: metadata (cached briefly) -> input check -> split to the server's max batch ->
chunks sent with bounded concurrency, each retried on UNAVAILABLE / connection errors -> outputs
merged in input order. After any retry the metadata cache is dropped: the server that came back may
serve another version or config.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from triton_bundle.client import tasks
from triton_bundle.client.batching import (
    PerThread,
    arun_ordered,
    batch_slices,
    merge_outputs,
    run_ordered,
    split_inputs,
)
from triton_bundle.client.connection import Endpoint, parse_endpoint
from triton_bundle.client.errors import ServerRejectedError
from triton_bundle.client.metadata import ModelMetadata, as_bytes_array, triton_datatype, validate_inputs
from triton_bundle.client.retry import (
    Failure,
    OnRetry,
    RetryEvent,
    RetryPolicy,
    acall_with_retry,
    call_with_retry,
    classify_failure,
)
from triton_bundle.client.shm import aregistered, registered, stage_inputs
from triton_bundle.client.stats import ModelStatistics, parse_statistics
from triton_bundle.client.transport import AsyncTransport, RawResult, SyncTransport, TensorPayload

T = TypeVar("T")
_NOT_FOUND = frozenset({"404", "StatusCode.NOT_FOUND"})


class ClientOptions(BaseModel):
    """Knobs shared by both clients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    retry: RetryPolicy = RetryPolicy()
    concurrency: Annotated[int, Field(ge=1, description="requests in flight at once per client")] = 4
    max_batch_size: Annotated[
        int | None, Field(ge=1, description="cap on rows per request, below the server's max")
    ] = None
    validate_inputs: bool = Field(True, description="check inputs against the model's metadata first")
    shm_threshold_bytes: Annotated[
        int | None, Field(ge=0, description="inputs this large go via system shared memory; None: never")
    ] = None
    metadata_ttl_s: Annotated[float, Field(ge=0)] = 30.0

    @classmethod
    def probing(cls, timeout_s: float) -> ClientOptions:
        """For health checks and statistics sampling: one connection, one retry, all within timeout_s."""
        return cls(
            timeout_s=timeout_s, retry=RetryPolicy(max_attempts=2, max_total_s=timeout_s), concurrency=1
        )


class ModelState(BaseModel):
    """One row of the server's model repository index."""

    name: str
    version: str = ""
    state: str = ""
    reason: str = ""


class _MetadataCache:
    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._items: dict[tuple[str, str], tuple[float, ModelMetadata]] = {}

    def get(self, model: str, version: str) -> ModelMetadata | None:
        hit = self._items.get((model, version))
        if hit is None or time.monotonic() - hit[0] > self._ttl_s:
            return None
        return hit[1]

    def put(self, model: str, version: str, metadata: ModelMetadata) -> None:
        self._items[(model, version)] = (time.monotonic(), metadata)

    def clear(self) -> None:
        self._items.clear()


@dataclass
class _Plan:
    """What one infer() call will send."""

    chunks: list[dict[str, np.ndarray]]
    output_names: list[str]
    batched: bool
    pad_values: dict[str, Any]


class _Shared:
    """The protocol- and concurrency-independent half of both clients."""

    def __init__(
        self, url: str, protocol: str | None, options: ClientOptions | None, on_retry: OnRetry | None
    ):
        self.endpoint: Endpoint = parse_endpoint(url, protocol)
        self.options = options or ClientOptions()
        self._user_on_retry = on_retry
        self._cache = _MetadataCache(self.options.metadata_ttl_s)
        self._lock = threading.Lock()
        self.retry_count = 0

    def _note_retry(self, event: RetryEvent) -> None:
        with self._lock:
            self.retry_count += 1
        self._cache.clear()
        if self._user_on_retry is not None:
            self._user_on_retry(event)

    def _not_found(
        self, model: str, exc: ServerRejectedError, available: list[str] | None
    ) -> ServerRejectedError:
        if exc.status not in _NOT_FOUND and "unknown model" not in str(exc):
            return exc
        served = ", ".join(available) if available else "none"
        return ServerRejectedError(
            f"model '{model}' is not served at {self.endpoint.url} (ready models: {served})", exc.status
        )

    def _plan(
        self,
        metadata: ModelMetadata,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] | None,
        pad_values: Mapping[str, Any] | None = None,
    ) -> _Plan:
        arrays = {name: as_bytes_array(np.asarray(value)) for name, value in inputs.items()}
        output_names = list(outputs) if outputs else metadata.output_names
        if self.options.validate_inputs:
            for name in output_names:
                metadata.output(name)
            batch = validate_inputs(metadata, arrays, split_batches=True)
        else:
            batch = next(iter(arrays.values())).shape[0] if metadata.batched and arrays else 0
        pads = {**metadata.pad_values, **(pad_values or {})}
        if not metadata.batched or batch == 0:
            return _Plan(chunks=[arrays], output_names=output_names, batched=False, pad_values=pads)
        limit = metadata.max_batch_size
        if self.options.max_batch_size is not None:
            limit = min(limit, self.options.max_batch_size)
        chunks = split_inputs(arrays, batch_slices(batch, limit))
        return _Plan(chunks=chunks, output_names=output_names, batched=True, pad_values=pads)

    def _shm_names(self, chunk: Mapping[str, np.ndarray]) -> set[str]:
        threshold = self.options.shm_threshold_bytes
        if threshold is None:
            return set()
        return {name for name, array in chunk.items() if _payload_bytes(array) >= threshold}

    @staticmethod
    def _payloads(chunk: Mapping[str, np.ndarray]) -> list[TensorPayload]:
        return [
            TensorPayload(name, triton_datatype(array), tuple(array.shape), array=array)
            for name, array in chunk.items()
        ]

    @staticmethod
    def _result(plan: _Plan, parts: list[RawResult]) -> tasks.InferenceResult:
        outputs = merge_outputs([p.outputs for p in parts], plan.pad_values)
        if not plan.batched:
            return tasks.InferenceResult(outputs=outputs, model_versions=[p.model_version for p in parts])
        versions: list[str] = []
        for chunk, part in zip(plan.chunks, parts, strict=True):
            rows = next(iter(chunk.values())).shape[0] if chunk else 0
            versions.extend([part.model_version] * rows)
        return tasks.InferenceResult(outputs=outputs, model_versions=versions)

    @staticmethod
    def _model_states(index: list[dict[str, Any]]) -> list[ModelState]:
        return [ModelState.model_validate(item) for item in index]


def _payload_bytes(array: np.ndarray) -> int:
    if array.dtype == np.object_:
        return sum(len(v) if isinstance(v, bytes | str) else 0 for v in array.flat) + 4 * array.size
    return array.nbytes


class TritonClient(_Shared):
    """Blocking client. Thread-safe: each worker thread gets its own connection.

    with TritonClient("grpc://127.0.0.1:8001") as client:
        results = client.classify("minilm-intent", ["where is my order?"])
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8000",
        protocol: str | None = None,
        *,
        options: ClientOptions | None = None,
        on_retry: OnRetry | None = None,
    ) -> None:
        super().__init__(url, protocol, options, on_retry)
        self._transports: PerThread[SyncTransport] = PerThread(
            lambda: SyncTransport(self.endpoint, self.options.timeout_s)
        )
        self._executor: ThreadPoolExecutor | None = None

    # -- plumbing --------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[SyncTransport], T]) -> T:
        def attempt() -> T:
            try:
                return fn(self._transports.get())
            except Exception as exc:
                if classify_failure(exc) is Failure.RETRYABLE:
                    # A fresh connection for the next attempt: the old one may be half-closed.
                    stale = self._transports.forget_current()
                    if stale is not None:
                        _quietly(stale.close)
                raise

        return call_with_retry(attempt, self.options.retry, what, on_retry=self._note_retry)

    def _pool(self) -> ThreadPoolExecutor | None:
        if self.options.concurrency <= 1:
            return None
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="tb-client")
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for transport in self._transports.drain():
            _quietly(transport.close)

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server and models -----------------------------------------------------------------------

    def is_live(self) -> bool:
        """True if the server answers; False (no retries) if nothing listens there."""
        return _probe(lambda: self._transports.get().is_live(), self._transports)

    def is_ready(self) -> bool:
        return _probe(lambda: self._transports.get().is_ready(), self._transports)

    def is_model_ready(self, model: str, version: str = "") -> bool:
        return _probe(lambda: self._transports.get().is_model_ready(model, version), self._transports)

    def wait_until_ready(self, timeout_s: float = 60.0, model: str | None = None) -> None:
        """Poll until the server (and `model`, if given) is ready, or raise ServerUnavailableError."""
        _wait(
            lambda: self.is_model_ready(model) if model else self.is_ready(), timeout_s, self.endpoint, model
        )

    def list_models(self) -> list[ModelState]:
        return self._model_states(self._call("list models", lambda t: t.repository_index()))

    def model_metadata(self, model: str, version: str = "", refresh: bool = False) -> ModelMetadata:
        cached = None if refresh else self._cache.get(model, version)
        if cached is not None:
            return cached
        what = f"metadata of model '{model}' at {self.endpoint.url}"
        try:
            raw = self._call(what, lambda t: t.model_metadata(model, version))
            config = self._call(what, lambda t: t.model_config(model, version))
        except ServerRejectedError as exc:
            raise self._not_found(model, exc, self._ready_names()) from None
        metadata = ModelMetadata.from_server(raw, config)
        self._cache.put(model, version, metadata)
        return metadata

    def _ready_names(self) -> list[str] | None:
        try:
            return [m.name for m in self.list_models() if m.state == "READY"]
        except Exception:
            return None

    def load_model(self, model: str) -> None:
        """Ask the server to (re)load a model (needs --model-control-mode=explicit); drops cached metadata."""
        self._call(f"load model '{model}'", lambda t: t.load_model(model))
        self._cache.clear()

    def unload_model(self, model: str) -> None:
        self._call(f"unload model '{model}'", lambda t: t.unload_model(model))
        self._cache.clear()

    def statistics(self, model: str = "", version: str = "") -> list[ModelStatistics]:
        """Per-model statistics; all models when `model` is empty."""
        return parse_statistics(self._call("statistics", lambda t: t.statistics(model, version)))

    def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        """The model's configuration as the server reports it (platform, ensemble steps, batching)."""
        return self._call(f"config of model '{model}'", lambda t: t.model_config(model, version))

    # -- inference -------------------------------------------------------------------------------

    def infer_tensors(
        self,
        model: str,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] | None = None,
        version: str = "",
        pad_values: Mapping[str, Any] | None = None,
    ) -> tasks.InferenceResult:
        """Raw tensors in, raw tensors out (any model). Batches larger than the model's max are
        split and sent concurrently; rows come back in input order. Chunks that come back with
        different widths (a tokenizer pads each request to its longest text) are padded to the widest
        with `pad_values[output]`, else the pad the model's config declares, else 0 / b"" (see
        batching.merge_outputs)."""
        metadata = self.model_metadata(model, version)
        plan = self._plan(metadata, inputs, outputs, pad_values)
        what = f"infer on model '{model}' at {self.endpoint.url}"
        try:
            parts = run_ordered(
                lambda chunk: self._infer_chunk(what, model, version, chunk, plan.output_names),
                plan.chunks,
                self._pool(),
            )
        except ServerRejectedError:
            self._cache.clear()  # the model may have changed under us: re-read its metadata next time
            raise
        return self._result(plan, parts)

    infer = infer_tensors

    def _infer_chunk(
        self, what: str, model: str, version: str, chunk: dict[str, np.ndarray], output_names: list[str]
    ) -> RawResult:
        shm_names = self._shm_names(chunk)
        if not shm_names:
            payloads = self._payloads(chunk)
            return self._call(what, lambda t: t.infer(model, payloads, output_names, version))
        staged = stage_inputs(chunk, shm_names)
        try:

            def via_shm(t: SyncTransport) -> RawResult:
                with registered(t, staged) as payloads:
                    return t.infer(model, payloads, output_names, version)

            return self._call(what, via_shm)
        finally:
            staged.destroy()

    def classify(
        self, model: str, texts: Sequence[str], *, probabilities: bool = False, version: str = ""
    ) -> list[tasks.Classification]:
        """Top-k labels and scores per text (the text-classification ensemble's contract)."""
        texts = tasks.text_list(texts)
        metadata = self.model_metadata(model, version)
        inputs = tasks.text_request(metadata, texts)
        result = self.infer_tensors(
            model, inputs, tasks.classification_outputs(metadata, probabilities), version
        )
        return tasks.parse_classifications(texts, result)

    def embed(self, model: str, texts: Sequence[str], *, version: str = "") -> tasks.Embeddings:
        """One vector per text (the feature-extraction ensemble's EMBEDDING output)."""
        texts = tasks.text_list(texts)
        metadata = self.model_metadata(model, version)
        inputs = tasks.text_request(metadata, texts)
        result = self.infer_tensors(model, inputs, tasks.embedding_outputs(metadata), version)
        return tasks.parse_embeddings(texts, result)

    def tag(
        self, model: str, texts: Sequence[str], *, aggregation: str | None = None, version: str = ""
    ) -> list[tasks.TokenTags]:
        """Entities per text (the token-classification ensemble); `aggregation` overrides the served
        default strategy (none | simple | first | average | max) for these texts."""
        texts = tasks.text_list(texts)
        metadata = self.model_metadata(model, version)
        inputs = tasks.tag_request(metadata, texts, aggregation)
        return tasks.parse_tags(
            texts, self.infer_tensors(model, inputs, tasks.tag_outputs(metadata), version)
        )

    def classify_images(
        self, model: str, images: Sequence[tasks.ImageLike], *, version: str = ""
    ) -> list[tasks.ImageClassification]:
        """Labels and scores per image: paths, encoded bytes or uint8 arrays."""
        images = list(images)
        metadata = self.model_metadata(model, version)
        sources, inputs = tasks.image_request(metadata, images)
        outputs = tasks.classification_outputs(metadata, with_probabilities=False)
        return tasks.parse_image_classifications(sources, self.infer_tensors(model, inputs, outputs, version))


class AsyncTritonClient(_Shared):
    """The asyncio client: the same methods, awaited. Use one per event loop.

    async with AsyncTritonClient("http://127.0.0.1:8000") as client:
        results = await client.classify("minilm-intent", ["where is my order?"])
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8000",
        protocol: str | None = None,
        *,
        options: ClientOptions | None = None,
        on_retry: OnRetry | None = None,
    ) -> None:
        super().__init__(url, protocol, options, on_retry)
        self._transport: AsyncTransport | None = None
        self._retired: list[AsyncTransport] = []
        self._limit: asyncio.Semaphore | None = None

    def _current(self) -> AsyncTransport:
        if self._transport is None:
            self._transport = AsyncTransport(
                self.endpoint, self.options.timeout_s, connection_limit=max(8, self.options.concurrency * 2)
            )
        return self._transport

    async def _call(self, what: str, fn: Callable[[AsyncTransport], Awaitable[T]]) -> T:
        async def attempt() -> T:
            transport = self._current()
            try:
                return await fn(transport)
            except Exception as exc:
                if classify_failure(exc) is Failure.RETRYABLE and self._transport is transport:
                    # New connection for later attempts; the old one may still carry other tasks'
                    # requests, so it is closed with the client, not now.
                    self._retired.append(transport)
                    self._transport = None
                raise

        return await acall_with_retry(attempt, self.options.retry, what, on_retry=self._note_retry)

    async def close(self) -> None:
        transports = [*self._retired, *([self._transport] if self._transport else [])]
        self._transport, self._retired = None, []
        for transport in transports:
            # Closing a connection to a dead server must not mask the real error.
            with contextlib.suppress(Exception):
                await transport.close()

    async def __aenter__(self) -> AsyncTritonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _probe(self, fn: Callable[[AsyncTransport], Awaitable[bool]]) -> bool:
        transport = self._current()
        try:
            return await fn(transport)
        except Exception as exc:
            if _is_not_found(exc):
                return False
            if classify_failure(exc) is Failure.FATAL:
                raise
            if self._transport is transport:
                self._retired.append(transport)
                self._transport = None
            return False

    async def is_live(self) -> bool:
        return await self._probe(lambda t: t.is_live())

    async def is_ready(self) -> bool:
        return await self._probe(lambda t: t.is_ready())

    async def is_model_ready(self, model: str, version: str = "") -> bool:
        return await self._probe(lambda t: t.is_model_ready(model, version))

    async def wait_until_ready(self, timeout_s: float = 60.0, model: str | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while not (await self.is_model_ready(model) if model else await self.is_ready()):
            if time.monotonic() > deadline:
                _raise_not_ready(self.endpoint, model, timeout_s)
            await asyncio.sleep(0.2)

    async def list_models(self) -> list[ModelState]:
        return self._model_states(await self._call("list models", lambda t: t.repository_index()))

    async def model_metadata(self, model: str, version: str = "", refresh: bool = False) -> ModelMetadata:
        cached = None if refresh else self._cache.get(model, version)
        if cached is not None:
            return cached
        what = f"metadata of model '{model}' at {self.endpoint.url}"
        try:
            raw = await self._call(what, lambda t: t.model_metadata(model, version))
            config = await self._call(what, lambda t: t.model_config(model, version))
        except ServerRejectedError as exc:
            try:
                ready = [m.name for m in await self.list_models() if m.state == "READY"]
            except Exception:
                ready = None
            raise self._not_found(model, exc, ready) from None
        metadata = ModelMetadata.from_server(raw, config)
        self._cache.put(model, version, metadata)
        return metadata

    async def load_model(self, model: str) -> None:
        await self._call(f"load model '{model}'", lambda t: t.load_model(model))
        self._cache.clear()

    async def unload_model(self, model: str) -> None:
        await self._call(f"unload model '{model}'", lambda t: t.unload_model(model))
        self._cache.clear()

    async def statistics(self, model: str = "", version: str = "") -> list[ModelStatistics]:
        return parse_statistics(await self._call("statistics", lambda t: t.statistics(model, version)))

    async def infer_tensors(
        self,
        model: str,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] | None = None,
        version: str = "",
        pad_values: Mapping[str, Any] | None = None,
    ) -> tasks.InferenceResult:
        metadata = await self.model_metadata(model, version)
        plan = self._plan(metadata, inputs, outputs, pad_values)
        what = f"infer on model '{model}' at {self.endpoint.url}"
        if self._limit is None:
            self._limit = asyncio.Semaphore(self.options.concurrency)
        limit = self._limit

        async def send(chunk: dict[str, np.ndarray]) -> RawResult:
            async with limit:  # the client-wide cap, shared by concurrent infer calls
                return await self._infer_chunk(what, model, version, chunk, plan.output_names)

        try:
            parts = await arun_ordered(send, plan.chunks, len(plan.chunks))
        except ServerRejectedError:
            self._cache.clear()  # the model may have changed under us: re-read its metadata next time
            raise
        return self._result(plan, parts)

    infer = infer_tensors

    async def _infer_chunk(
        self, what: str, model: str, version: str, chunk: dict[str, np.ndarray], output_names: list[str]
    ) -> RawResult:
        shm_names = self._shm_names(chunk)
        if not shm_names:
            payloads = self._payloads(chunk)
            return await self._call(what, lambda t: t.infer(model, payloads, output_names, version))
        staged = stage_inputs(chunk, shm_names)
        try:

            async def via_shm(t: AsyncTransport) -> RawResult:
                async with aregistered(t, staged) as payloads:
                    return await t.infer(model, payloads, output_names, version)

            return await self._call(what, via_shm)
        finally:
            staged.destroy()

    async def classify(
        self, model: str, texts: Sequence[str], *, probabilities: bool = False, version: str = ""
    ) -> list[tasks.Classification]:
        texts = tasks.text_list(texts)
        metadata = await self.model_metadata(model, version)
        inputs = tasks.text_request(metadata, texts)
        outputs = tasks.classification_outputs(metadata, probabilities)
        return tasks.parse_classifications(
            list(texts), await self.infer_tensors(model, inputs, outputs, version)
        )

    async def embed(self, model: str, texts: Sequence[str], *, version: str = "") -> tasks.Embeddings:
        texts = tasks.text_list(texts)
        metadata = await self.model_metadata(model, version)
        inputs = tasks.text_request(metadata, texts)
        outputs = tasks.embedding_outputs(metadata)
        return tasks.parse_embeddings(texts, await self.infer_tensors(model, inputs, outputs, version))

    async def tag(
        self, model: str, texts: Sequence[str], *, aggregation: str | None = None, version: str = ""
    ) -> list[tasks.TokenTags]:
        texts = tasks.text_list(texts)
        metadata = await self.model_metadata(model, version)
        inputs = tasks.tag_request(metadata, texts, aggregation)
        result = await self.infer_tensors(model, inputs, tasks.tag_outputs(metadata), version)
        return tasks.parse_tags(texts, result)

    async def classify_images(
        self, model: str, images: Sequence[tasks.ImageLike], *, version: str = ""
    ) -> list[tasks.ImageClassification]:
        images = list(images)
        metadata = await self.model_metadata(model, version)
        sources, inputs = tasks.image_request(metadata, images)
        outputs = tasks.classification_outputs(metadata, with_probabilities=False)
        result = await self.infer_tensors(model, inputs, outputs, version)
        return tasks.parse_image_classifications(sources, result)


def _quietly(fn: Callable[[], object]) -> None:
    # Closing a connection to a dead server must not mask the real error.
    with contextlib.suppress(Exception):
        fn()


def _probe(fn: Callable[[], bool], transports: PerThread[SyncTransport]) -> bool:
    """A health check answers False for 'nothing there yet' instead of raising or retrying."""
    try:
        return fn()
    except Exception as exc:
        if _is_not_found(exc):
            return False
        if classify_failure(exc) is Failure.FATAL:
            raise
        stale = transports.forget_current()
        if stale is not None:
            _quietly(stale.close)
        return False


def _is_not_found(exc: BaseException) -> bool:
    status = getattr(exc, "status", None)
    return callable(status) and status() in _NOT_FOUND


def _raise_not_ready(endpoint: Endpoint, model: str | None, timeout_s: float) -> None:
    from triton_bundle.client.errors import ServerUnavailableError

    what = f"model '{model}'" if model else "the server"
    raise ServerUnavailableError(f"{what} at {endpoint.url} was not ready within {timeout_s:g} s")


def _wait(check: Callable[[], bool], timeout_s: float, endpoint: Endpoint, model: str | None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            _raise_not_ready(endpoint, model, timeout_s)
        time.sleep(0.2)
