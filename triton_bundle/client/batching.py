"""Client-side batching: split a large input into server-sized chunks, run them with bounded
concurrency, and put the answers back in input order.

Order is kept by construction: every chunk carries its index and results land in a list slot by
that index, whatever order the server finishes them in.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor, wait
from typing import Any, Generic, TypeVar

import numpy as np

from triton_bundle.client.errors import RaggedOutputError

T = TypeVar("T")
R = TypeVar("R")


def batch_slices(total: int, max_batch: int) -> list[slice]:
    """Consecutive slices of at most `max_batch` rows covering `range(total)`."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    return [slice(start, min(start + max_batch, total)) for start in range(0, total, max_batch)]


def split_inputs(inputs: Mapping[str, np.ndarray], slices: Sequence[slice]) -> list[dict[str, np.ndarray]]:
    """The same rows of every input, chunk by chunk (views, no copies)."""
    return [{name: array[part] for name, array in inputs.items()} for part in slices]


def default_pad(dtype: np.dtype) -> Any:
    """The fill for a ragged output without a known pad value: b"" for BYTES, False for BOOL, else 0.

    Zero is the pad of attention masks and token type ids, and of input ids for BERT-style vocabularies;
    a model whose ids pad with another value says so in its config (ModelMetadata.pad_values).
    """
    if dtype.kind in "OSU":
        return b""
    if dtype.kind == "b":
        return False
    return 0


def merge_outputs(
    parts: Sequence[Mapping[str, np.ndarray]], pad_values: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Concatenate each output along the batch dim, in chunk order.

    Chunks of a split request can come back with different widths (a tokenizer pads each request to
    its own longest text): every chunk is then padded to the widest on each non-batch axis, with
    `pad_values[name]` or `default_pad(dtype)`, so row i of the result is row i of its chunk followed
    by pad values only.
    """
    if not parts:
        return {}
    if len(parts) == 1:
        return dict(parts[0])
    pads = pad_values or {}
    return {name: _concat_padded(name, [part[name] for part in parts], pads.get(name)) for name in parts[0]}


def _concat_padded(name: str, arrays: list[np.ndarray], pad: Any) -> np.ndarray:
    ranks = {array.ndim for array in arrays}
    if len(ranks) > 1 or 0 in ranks:
        shapes = ", ".join(str(list(a.shape)) for a in arrays[:4])
        raise RaggedOutputError(
            f"output '{name}' came back with shapes {shapes} from the chunks of one request: "
            "expected a batch dim first and the same number of dims in every chunk"
        )
    widest = tuple(max(sizes) for sizes in zip(*(a.shape[1:] for a in arrays), strict=True))
    if all(array.shape[1:] == widest for array in arrays):
        return np.concatenate(arrays, axis=0)
    dtype = np.result_type(*arrays) if all(a.dtype.kind != "O" for a in arrays) else np.dtype(object)
    fill = default_pad(dtype) if pad is None else pad
    merged = np.full((sum(a.shape[0] for a in arrays), *widest), fill, dtype=dtype)
    start = 0
    for array in arrays:
        merged[(slice(start, start + array.shape[0]), *(slice(0, n) for n in array.shape[1:]))] = array
        start += array.shape[0]
    return merged


def run_ordered(fn: Callable[[T], R], items: Sequence[T], executor: Executor | None) -> list[R]:
    """Apply `fn` to every item on `executor` (its worker count is the concurrency limit); results
    in item order. Without an executor, items run one after another.

    On the first failure, chunks not yet started are cancelled and the ones running are waited for
    (no request is left in flight behind the caller's back), then the failure is raised.
    """
    if executor is None or len(items) <= 1:
        return [fn(item) for item in items]
    futures = [executor.submit(fn, item) for item in items]
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        wait(futures)
        raise


async def arun_ordered(fn: Callable[[T], Awaitable[R]], items: Sequence[T], concurrency: int) -> list[R]:
    """The asyncio twin of `run_ordered` (a semaphore bounds the in-flight count)."""
    limit = asyncio.Semaphore(max(1, concurrency))

    async def bounded(item: T) -> R:
        async with limit:
            return await fn(item)

    tasks = [asyncio.ensure_future(bounded(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class PerThread(Generic[T]):
    """One object per worker thread, built on first use (tritonclient's HTTP client is not
    thread-safe); remembers them all so they can be closed together."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[T] = []

    def get(self) -> T:
        obj = getattr(self._local, "obj", None)
        if obj is None:
            obj = self._factory()
            self._local.obj = obj
            with self._lock:
                self._made.append(obj)
        return obj

    def forget_current(self) -> T | None:
        """Drop this thread's object (e.g. a broken connection) and return it for closing."""
        obj = getattr(self._local, "obj", None)
        if obj is not None:
            self._local.obj = None
            with self._lock:
                self._made = [o for o in self._made if o is not obj]
        return obj

    def drain(self) -> list[T]:
        with self._lock:
            made, self._made = self._made, []
        self._local = threading.local()
        return made
