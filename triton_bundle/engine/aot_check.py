"""Does TensorRT accept this graph? Answered on any host, GPU or not, with TensorRT for RTX.

`tensorrt-rtx-cu12` (PyPI) parses ONNX and builds a strongly typed engine ahead of time without a GPU.
Its plans are not datacenter TensorRT plans (Triton's tensorrt backend cannot load them), so the plan
is a by-product: what counts is that every node imported and the builder produced a plan for the
profile. Refused nodes are listed one by one with the parser's reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from triton_bundle.engine.errors import (
    EngineBuildError,
    GraphRejectedError,
    ProfileError,
    TensorRTUnavailableError,
)
from triton_bundle.engine.inspect import LayerPrecisionSummary
from triton_bundle.engine.manifest import EngineManifest, ProfileDims
from triton_bundle.engine.trt_build import BuildOptions, Flavour, UnsupportedNode, build_plan
from triton_bundle.manifest import sha256_file

RTX_INSTALL_HINT = "pip install 'triton-bundle[trt-rtx]'  (the PyPI package tensorrt-rtx-cu12)"


class AotCheckResult(BaseModel):
    """The verdict of one ahead-of-time parse + build."""

    passed: bool
    precision: str
    source_onnx: str
    source_onnx_sha256: str
    tensorrt_rtx_version: str
    target_compute_capabilities: list[str]  # empty: TensorRT-RTX's default portable set
    profiles: list[ProfileDims]
    build_options: dict[str, str | int | float | bool | None]
    unsupported_nodes: list[UnsupportedNode] = []
    error: str | None = None
    build_seconds: float | None = None
    plan_bytes: int | None = None
    input_types: dict[str, str] = {}
    layer_precisions: LayerPrecisionSummary | None = None

    def describe(self) -> str:
        if self.passed and self.layer_precisions is not None:
            return (
                f"TensorRT-RTX {self.tensorrt_rtx_version} built {self.precision} in "
                f"{self.build_seconds:.1f}s ({(self.plan_bytes or 0) / 1e6:.1f} MB); "
                f"{self.layer_precisions.describe()}"
            )
        return self.error or "failed"

    def engine_manifest(self, engine_file: str = "model.plan") -> EngineManifest:
        """The engine.json for the plan this check built (kept only on request)."""
        summary = self.layer_precisions
        return EngineManifest(
            engine_file=engine_file,
            builder="tensorrt_rtx",
            tensorrt_version=self.tensorrt_rtx_version,
            precision=self.precision,
            profiles=self.profiles,
            source_onnx=self.source_onnx,
            source_onnx_sha256=self.source_onnx_sha256,
            build_options=self.build_options,
            layer_precisions=summary.by_precision if summary else {},
            layer_precisions_source=summary.source if summary else None,
            compute_layer_precisions=summary.compute_layers if summary else {},
            input_types=self.input_types,
            build_seconds=self.build_seconds,
        )


def load_tensorrt_rtx() -> Flavour:
    try:
        import tensorrt_rtx
    except ImportError as exc:
        raise TensorRTUnavailableError(
            f"the ahead-of-time check needs TensorRT for RTX, which is not installed ({exc}); run: "
            f"{RTX_INSTALL_HINT}"
        ) from None
    return Flavour(name="tensorrt_rtx", trt=tensorrt_rtx, uses_timing_cache=False)


def _compute_capability_setter(trt: Any, targets: list[str]) -> Any:
    def configure(config: Any) -> None:
        config.num_compute_capabilities = len(targets)
        for index, target in enumerate(targets):
            member = f"SM{target.replace('.', '')}"
            if member not in trt.ComputeCapability.__members__:
                known = [m for m in trt.ComputeCapability.__members__ if m.startswith("SM")]
                raise EngineBuildError(
                    f"TensorRT-RTX cannot target compute capability {target} (it knows {known})"
                )
            config.set_compute_capability(trt.ComputeCapability.__members__[member], index)

    return configure


def aot_check(
    onnx_path: Path,
    profile: ProfileDims,
    options: BuildOptions,
    precision: str,
    compute_capabilities: list[str] | None = None,
    flavour: Flavour | None = None,
) -> tuple[AotCheckResult, bytes | None]:
    """Parse and build `onnx_path` with TensorRT for RTX; the result says what passed or what was refused.

    Returns the plan bytes too (None when the check failed). Raises only when TensorRT-RTX is missing.
    """
    flavour = flavour or load_tensorrt_rtx()
    onnx_path = Path(onnx_path)
    targets = list(compute_capabilities or [])
    # Timing caches are no-ops in TensorRT-RTX, and version-compatible plans embed datacenter
    # TensorRT's lean runtime, which TensorRT-RTX lacks; neither changes whether the graph is accepted.
    skipped = [
        name
        for name, value in (
            ("timing_cache", options.timing_cache),
            ("version_compatible", options.version_compatible),
        )
        if value
    ]
    applied = options.model_copy(update={"timing_cache": None, "version_compatible": False})
    result = AotCheckResult(
        passed=False,
        precision=precision,
        source_onnx=str(onnx_path),
        source_onnx_sha256=sha256_file(onnx_path),
        tensorrt_rtx_version=flavour.version,
        target_compute_capabilities=targets,
        profiles=[profile],
        build_options={
            **applied.record(),
            "ahead_of_time": True,
            "not_applied": ", ".join(skipped) or None,
        },
    )
    configure = _compute_capability_setter(flavour.trt, targets) if targets else None
    try:
        built = build_plan(flavour, onnx_path, profile, applied, configure=configure)
    except GraphRejectedError as exc:
        return result.model_copy(update={"unsupported_nodes": exc.nodes, "error": str(exc)}), None
    except (EngineBuildError, ProfileError) as exc:
        return result.model_copy(update={"error": str(exc)}), None
    return (
        result.model_copy(
            update={
                "passed": True,
                "build_seconds": round(built.build_seconds, 3),
                "plan_bytes": len(built.plan),
                "input_types": built.input_types,
                "layer_precisions": built.network,
            }
        ),
        built.plan,
    )
