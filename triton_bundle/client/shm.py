"""System shared memory for large input tensors (client and server on the same host).

Copying a large tensor into a shared region and sending only its name skips serialising it into the
request body. Each request gets its own region (concurrent chunks must not share one); it is
registered with the server per attempt, because a restarted server has forgotten every region.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from triton_bundle.client.errors import SharedMemoryError
from triton_bundle.client.metadata import triton_datatype
from triton_bundle.client.transport import ShmRef, TensorPayload


def tensor_bytes(array: np.ndarray) -> np.ndarray:
    """The array as it lies in shared memory: raw for numbers, Triton's length-prefixed form for BYTES."""
    if array.dtype == np.object_:
        from tritonclient.utils import serialize_byte_tensor

        return serialize_byte_tensor(array)
    return np.ascontiguousarray(array)


def _nbytes(staged: np.ndarray) -> int:
    return len(staged.item()) if staged.dtype == np.object_ else staged.nbytes


@dataclass
class StagedInputs:
    """Inputs copied into one shared memory region, ready to be referenced by a request."""

    region: str
    key: str
    byte_size: int
    payloads: list[TensorPayload]
    _handle: Any = field(repr=False, default=None)

    def destroy(self) -> None:
        if self._handle is not None:
            from tritonclient.utils import shared_memory

            shared_memory.destroy_shared_memory_region(self._handle)
            self._handle = None


def stage_inputs(inputs: Mapping[str, np.ndarray], use_shm: set[str]) -> StagedInputs:
    """Copy the inputs named in `use_shm` into a fresh region; the others stay inline payloads."""
    from tritonclient.utils import shared_memory

    staged = {name: tensor_bytes(inputs[name]) for name in inputs if name in use_shm}
    total = sum(_nbytes(a) for a in staged.values())
    region = f"tb-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    key = f"/{region}"
    try:
        handle = shared_memory.create_shared_memory_region(region, key, max(total, 1), create_only=True)
    except Exception as exc:
        raise SharedMemoryError(
            f"could not create a {total}-byte system shared memory region: {exc}; "
            "check free space in /dev/shm or turn shared memory off"
        ) from exc
    payloads: list[TensorPayload] = []
    offset = 0
    try:
        for name, array in inputs.items():
            datatype = triton_datatype(array)
            if name in staged:
                size = _nbytes(staged[name])
                shared_memory.set_shared_memory_region(handle, [staged[name]], offset=offset)
                ref = ShmRef(region=region, byte_size=size, offset=offset)
                payloads.append(TensorPayload(name, datatype, tuple(array.shape), shm=ref))
                offset += size
            else:
                payloads.append(TensorPayload(name, datatype, tuple(array.shape), array=array))
    except Exception:
        shared_memory.destroy_shared_memory_region(handle)
        raise
    return StagedInputs(region=region, key=key, byte_size=max(total, 1), payloads=payloads, _handle=handle)


@contextlib.contextmanager
def registered(transport: Any, staged: StagedInputs) -> Iterator[list[TensorPayload]]:
    """Register the region with the server for one request, and unregister it afterwards."""
    try:
        transport.register_system_shm(staged.region, staged.key, staged.byte_size)
    except Exception as exc:
        if _is_server_side_shm_failure(exc):
            raise SharedMemoryError(
                f"the server could not map shared memory region '{staged.region}': {exc}; "
                "system shared memory needs the client and server on the same host (and, in a "
                "container, a shared /dev/shm)"
            ) from exc
        raise
    try:
        yield staged.payloads
    finally:
        with contextlib.suppress(Exception):
            transport.unregister_system_shm(staged.region)


@contextlib.asynccontextmanager
async def aregistered(transport: Any, staged: StagedInputs) -> Any:
    """The asyncio twin of `registered`."""
    try:
        await transport.register_system_shm(staged.region, staged.key, staged.byte_size)
    except Exception as exc:
        if _is_server_side_shm_failure(exc):
            raise SharedMemoryError(
                f"the server could not map shared memory region '{staged.region}': {exc}; "
                "system shared memory needs the client and server on the same host"
            ) from exc
        raise
    try:
        yield staged.payloads
    finally:
        with contextlib.suppress(Exception):
            await transport.unregister_system_shm(staged.region)


def _is_server_side_shm_failure(exc: BaseException) -> bool:
    from triton_bundle.client.retry import Failure, classify_failure

    # A refused connection is the retry loop's business; anything else means the server tried and failed.
    return classify_failure(exc) is Failure.FATAL
