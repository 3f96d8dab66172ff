"""Which TensorRT each NVIDIA Triton image ships: an engine runs only on the TensorRT it was built with.

From NVIDIA's frameworks support matrix (nvcr.io/nvidia/tritonserver:<YY.MM>-py3) up to 25.10; later rows
name their NVIDIA source (docs/ops-release.md has the full list). Add a row only when the TensorRT of that
Triton image is confirmed: Triton 26.05 and 26.06 were built on the previous month's base image
(triton-inference-server/server build.py, upstream_container_version), so their TensorRT can differ from
the TensorRT container of the same tag and they are left out. An unknown tag falls back to comparing the
tag the engine was built for.
"""

from __future__ import annotations

TRITON_IMAGE_TENSORRT: dict[str, str] = {
    "24.01": "8.6.1",
    "24.02": "8.6.3",
    "24.03": "8.6.3",
    "24.04": "8.6.3",
    "24.05": "10.0.1",
    "24.06": "10.1.0",
    "24.07": "10.2.0",
    "24.08": "10.3.0",
    "24.09": "10.4.0",
    "24.10": "10.5.0",
    "24.11": "10.6.0",
    "24.12": "10.7.0",
    "25.01": "10.8.0",
    "25.02": "10.8.0",
    "25.03": "10.9.0",
    "25.04": "10.9.0",
    "25.05": "10.10.0",
    "25.06": "10.11.0",
    "25.07": "10.11.0",
    "25.08": "10.13.2",
    "25.09": "10.13.3",
    "25.10": "10.13.3",
    # NVIDIA/Model-Optimizer 8f4c11aa (PR #1112): the 26.02 TensorRT container has TensorRT 10.15.1.
    "26.02": "10.15.1",
    # NVIDIA's CUDA DL 26.03 release notes (the images' common base): TensorRT 10.16.0.72, CUDA 13.2.0.
    "26.03": "10.16.0",
    # NVIDIA/Model-Optimizer examples/onnx_ptq/far3d (ccf44ea6): the 26.07 images carry TensorRT 11.1
    # (bindings 11.1.0.106); server r26.07 build.py builds Triton 26.07 on the same 26.07 base.
    "26.07": "11.1.0",
}


def tensorrt_for_image(tag: str) -> str | None:
    return TRITON_IMAGE_TENSORRT.get(tag)


def release(version: str) -> tuple[int, ...]:
    """major.minor: serialized engines are tied to the TensorRT release that built them."""
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    return tuple(parts)


def images_for_tensorrt(version: str) -> list[str]:
    return [tag for tag, trt in TRITON_IMAGE_TENSORRT.items() if release(trt) == release(version)]
