"""The GPU build: datacenter TensorRT on an NVIDIA GPU, the plan Triton's tensorrt backend serves.

Thin on purpose: the shared `build_plan` does the work; this adds the GPU facts (name, compute
capability), the timing cache, and the engine inspector's per-layer precisions. `tensorrt` is imported
only here and only when called; on a host without it (or without a GPU) the error names the container
command that builds the engines instead.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

from triton_bundle.engine.errors import EngineBuildError, TensorRTUnavailableError
from triton_bundle.engine.gpu import current_gpu
from triton_bundle.engine.inspect import inspect_engine
from triton_bundle.engine.manifest import EngineManifest, ProfileDims
from triton_bundle.engine.trt_build import BuildOptions, Flavour, build_plan, capturing_logger
from triton_bundle.manifest import sha256_file

TENSORRT_IMAGE = "nvcr.io/nvidia/tensorrt:{tag}-py3"


def container_command(spec_path: str, variant: str, triton_image_tag: str, workdir: str | None = None) -> str:
    """The one-line `docker run` that builds this variant with the TensorRT of the Triton release.

    The checkout is mounted at the same path so the manifest's absolute paths hold inside; the bundle
    runs from the checkout (`python3 -m triton_bundle.engine`), only its light dependencies installed.
    """
    image = TENSORRT_IMAGE.format(tag=triton_image_tag)
    inner = (
        "pip install -q --user --break-system-packages -r docker/engine-builder/requirements.txt && "
        f"python3 -m triton_bundle.engine build {shlex.quote(spec_path)} --variant {variant}"
        + (f" --workdir {shlex.quote(workdir)}" if workdir else "")
    )
    return (
        'docker run --rm --gpus all --user "$(id -u):$(id -g)" -e HOME=/tmp '
        f'-v "$PWD":"$PWD" -w "$PWD" {image} bash -c {shlex.quote(inner)}'
    )


def load_tensorrt(hint: str) -> Flavour:
    """Datacenter TensorRT, or an error that says how to build where it is (`hint`: container command)."""
    try:
        import tensorrt
    except ImportError:
        raise TensorRTUnavailableError(
            "building a TensorRT engine needs datacenter TensorRT and an NVIDIA GPU; this host has no "
            f"`tensorrt` module. Build in NVIDIA's TensorRT container on the GPU type that will serve:\n  {hint}\n"
            "  (or check here that TensorRT accepts the graph, without a GPU: add --aot-check)"
        ) from None
    return Flavour(name="tensorrt", trt=tensorrt, uses_timing_cache=True)


@dataclass
class GpuBuild:
    manifest: EngineManifest
    plan: bytes
    timing_cache: bytes | None


def build_engine(
    onnx_path: Path,
    profile: ProfileDims,
    options: BuildOptions,
    precision: str,
    triton_image_tag: str | None,
    hint: str,
) -> GpuBuild:
    """Build a plan for GPU 0 and describe it (TensorRT version, GPU, profiles, layer precisions)."""
    flavour = load_tensorrt(hint)
    gpu = current_gpu()
    if gpu is None:
        raise TensorRTUnavailableError(
            f"TensorRT {flavour.version} is installed but no NVIDIA GPU is visible (libcuda found no device); "
            f"engines are built on the GPU type that serves them:\n  {hint}"
        )
    built = build_plan(flavour, Path(onnx_path), profile, options)
    logger = capturing_logger(flavour.trt)
    engine = flavour.trt.Runtime(logger).deserialize_cuda_engine(built.plan)
    if engine is None:
        raise EngineBuildError(
            f"TensorRT {flavour.version} built a plan it cannot load back on {gpu.name}: "
            + "; ".join(logger.messages[-5:])
        )
    summary = inspect_engine(flavour.trt, engine)
    manifest = EngineManifest(
        builder="tensorrt",
        tensorrt_version=flavour.version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=precision,
        profiles=[profile],
        source_onnx=str(onnx_path),
        source_onnx_sha256=sha256_file(Path(onnx_path)),
        build_options={**options.record(), "timing_cache_reused": built.timing_cache_reused},
        layer_precisions=summary.by_precision,
        layer_precisions_source=summary.source,
        compute_layer_precisions=summary.compute_layers,
        input_types=built.input_types,
        engine_sha256=hashlib.sha256(built.plan).hexdigest(),
        build_seconds=round(built.build_seconds, 3),
        triton_image_tag=triton_image_tag,
    )
    return GpuBuild(manifest=manifest, plan=built.plan, timing_cache=built.timing_cache)
