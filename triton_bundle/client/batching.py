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
from typing import Generic, TypeVar

import numpy as np

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


def merge_outputs(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate each output along the batch dim, in chunk order."""
    if not parts:
        return {}
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([part[name] for part in parts], axis=0) for name in parts[0]}


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
