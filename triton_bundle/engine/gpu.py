"""The GPU TensorRT builds on (CUDA device 0 of this process), read from the CUDA driver itself.

ctypes on libcuda keeps this free of extra packages: the driver library is there wherever a GPU is
(the NVIDIA container toolkit mounts it), and it honours CUDA_VISIBLE_DEVICES as TensorRT does.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_CC_MINOR = 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR


@dataclass(frozen=True)
class BuildGpu:
    name: str
    compute_capability: str  # "9.0"


def current_gpu() -> BuildGpu | None:
    """Device 0 as CUDA numbers it, or None when there is no driver or no device."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device = ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), 0) != 0:
        return None
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(), ctypes.c_int()
    if (
        cuda.cuDeviceGetName(name, len(name), device) != 0
        or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device) != 0
        or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device) != 0
    ):
        return None
    return BuildGpu(
        name=name.value.decode(errors="replace"), compute_capability=f"{major.value}.{minor.value}"
    )
