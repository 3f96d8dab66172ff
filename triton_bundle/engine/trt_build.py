"""The one build function both TensorRT flavours share: ONNX -> strongly typed network -> profile ->
builder config -> serialized plan.

Datacenter TensorRT (10.x, 11.x) and TensorRT for RTX expose the same Python API for these steps; the
module is passed in, so nothing here imports TensorRT. Precision comes from the graph itself (an FP16
cast graph or explicit Q/DQ nodes): TensorRT 11 removed the FP16/INT8 builder flags and calibrators,
and a strongly typed network keeps every tensor in the type the ONNX gives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from triton_bundle.engine.errors import EngineBuildError, GraphRejectedError, ProfileError
from triton_bundle.engine.inspect import LayerPrecisionSummary, summarize_network
from triton_bundle.engine.manifest import ProfileDims
from triton_bundle.spec import EngineSpec

FlavourName = Literal["tensorrt", "tensorrt_rtx"]
HardwareCompatibility = Literal["none", "ampere_plus", "same_compute_capability"]


@dataclass(frozen=True)
class Flavour:
    """A TensorRT Python module and what differs between the flavours."""

    name: FlavourName
    trt: Any
    # TensorRT for RTX times nothing ahead of time: its timing-cache calls are no-ops.
    uses_timing_cache: bool

    @property
    def version(self) -> str:
        return str(self.trt.__version__)


class BuildOptions(BaseModel):
    """Builder settings from the spec's `engine` section."""

    optimization_level: int = Field(3, ge=0, le=5)
    version_compatible: bool = False
    hardware_compatibility: HardwareCompatibility = "none"
    timing_cache: Path | None = None

    @classmethod
    def from_spec(cls, engine: EngineSpec, timing_cache: Path | None) -> BuildOptions:
        return cls(
            optimization_level=engine.builder_optimization_level,
            version_compatible=engine.version_compatible,
            hardware_compatibility=engine.hardware_compatibility,
            timing_cache=timing_cache,
        )

    def record(self) -> dict[str, str | int | bool | None]:
        """Flat values for EngineManifest.build_options (the serving preflight reads these keys)."""
        return {
            "builder_optimization_level": self.optimization_level,
            "version_compatible": self.version_compatible,
            "hardware_compatibility": self.hardware_compatibility,
            "timing_cache": str(self.timing_cache) if self.timing_cache else None,
            "strongly_typed": True,
        }


class UnsupportedNode(BaseModel):
    """One node TensorRT's ONNX parser refused, and why."""

    index: int | None
    name: str
    op_type: str
    reason: str

    def describe(self) -> str:
        where = f"node {self.index} " if self.index is not None and self.index >= 0 else ""
        return f"{where}'{self.name}' ({self.op_type}): {self.reason}"


@dataclass
class BuiltPlan:
    plan: bytes
    network: LayerPrecisionSummary
    input_types: dict[str, str]
    build_seconds: float
    timing_cache: bytes | None = None
    timing_cache_reused: bool = False
    log: list[str] = field(default_factory=list)


def capturing_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps warnings and errors, to put the builder's own words in our errors."""

    class _CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(f"[{str(severity).rsplit('.', 1)[-1]}] {msg}")

    return _CapturingLogger()


def _op_types(onnx_path: Path) -> dict[str, list[tuple[int, str, str]]]:
    """op_type -> [(node index, node name, domain)] of the top-level graph."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    found: dict[str, list[tuple[int, str, str]]] = {}
    for index, node in enumerate(model.graph.node):
        found.setdefault(node.op_type, []).append((index, node.name or f"#{index}", node.domain))
    return found


def rejected_nodes(parser: Any, onnx_path: Path) -> list[UnsupportedNode]:
    """Every node the parser reported, plus nodes whose op type it says it cannot import at all."""
    nodes: list[UnsupportedNode] = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        index = int(error.node())
        code = str(error.code()).rsplit(".", 1)[-1]
        detail = str(error.desc()).strip()
        if detail in {"", "false"}:  # the checker's bare assertion says nothing more than the code
            detail = "no importer for this node in this TensorRT"
        nodes.append(
            UnsupportedNode(
                index=index if index >= 0 else None,
                name=error.node_name() or ("(graph)" if index < 0 else f"#{index}"),
                op_type=error.node_operator() or "?",
                reason=f"{code}: {detail}",
            )
        )
    reported = {n.name for n in nodes}
    for op_type, where in _op_types(onnx_path).items():
        if parser.supports_operator(op_type):
            continue
        for index, name, domain in where:
            if name not in reported:
                qualified = f"{domain}::{op_type}" if domain else op_type
                nodes.append(
                    UnsupportedNode(
                        index=index,
                        name=name,
                        op_type=op_type,
                        reason=f"UNSUPPORTED_NODE: the ONNX parser has no importer for {qualified}",
                    )
                )
    return sorted(nodes, key=lambda n: (n.index if n.index is not None else -1, n.name))


def rejection_message(onnx_path: Path, flavour: Flavour, nodes: list[UnsupportedNode]) -> str:
    lines = [f"{flavour.name} {flavour.version} cannot import {onnx_path}: {len(nodes)} node(s) refused"]
    # Grouped by op type and reason: a quantized transformer can have dozens of the same refusal.
    groups: dict[tuple[str, str], list[UnsupportedNode]] = {}
    for node in nodes:
        groups.setdefault((node.op_type, node.reason), []).append(node)
    for (op_type, reason), members in groups.items():
        shown = ", ".join(n.describe().split(" (", 1)[0] for n in members[:3])
        more = f" and {len(members) - 3} more" if len(members) > 3 else ""
        lines.append(f"  - {op_type} x{len(members)}: {reason}\n      at {shown}{more}")
    lines.append(
        "  expected: standard ONNX ops TensorRT imports (for INT8, explicit QuantizeLinear/"
        "DequantizeLinear pairs, not the dynamic MatMulInteger/DynamicQuantizeLinear of 'int8-dynamic')"
    )
    return "\n".join(lines)


def network_flags(trt: Any) -> int:
    """Creation flags for a strongly typed network. TensorRT 10 and TensorRT for RTX need STRONGLY_TYPED;
    TensorRT 11 removed weak typing, so a release without the member gets 0 (strongly typed anyway)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def parse_onnx(flavour: Flavour, onnx_path: Path, logger: Any) -> tuple[Any, Any, Any]:
    """(builder, strongly typed network, parser); GraphRejectedError lists every refused node."""
    trt = flavour.trt
    builder = trt.Builder(logger)
    if builder is None:
        raise EngineBuildError(
            f"{flavour.name} could not create a builder: {'; '.join(logger.messages[-3:])}"
        )
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        nodes = rejected_nodes(parser, onnx_path)
        raise GraphRejectedError(rejection_message(onnx_path, flavour, nodes), nodes)
    return builder, network, parser


def _add_profile(trt: Any, builder: Any, network: Any, config: Any, profile: ProfileDims) -> None:
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    missing = [name for name in names if name not in profile.shapes]
    if missing:
        raise ProfileError(
            f"the profile gives no shapes for network input(s) {missing} (it has {sorted(profile.shapes)})"
        )
    optimization_profile = builder.create_optimization_profile()
    for name in names:
        low, opt, high = profile.shapes[name]
        optimization_profile.set_shape(name, trt.Dims(low), trt.Dims(opt), trt.Dims(high))
    if config.add_optimization_profile(optimization_profile) < 0:
        raise ProfileError(
            f"TensorRT refused the optimisation profile {profile.shapes} (min <= opt <= max per dim?)"
        )


def _configure(flavour: Flavour, config: Any, options: BuildOptions) -> bool:
    """Apply the options; returns whether a saved timing cache was loaded."""
    trt = flavour.trt
    config.builder_optimization_level = options.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector needs per-layer detail
    levels = trt.HardwareCompatibilityLevel.__members__
    level = options.hardware_compatibility.upper()
    if level not in levels:  # SAME_COMPUTE_CAPABILITY is newer than some TensorRT 10 releases
        raise EngineBuildError(
            f"{flavour.name} {flavour.version} has no hardware compatibility level "
            f"'{options.hardware_compatibility}' (it has: {', '.join(m.lower() for m in levels)}); "
            "change engine.hardware_compatibility in the spec"
        )
    config.hardware_compatibility_level = levels[level]
    if options.version_compatible:
        # Still a builder flag in TensorRT 10.x, 11.x and for RTX; only the precision flags went away.
        flag = getattr(trt.BuilderFlag, "VERSION_COMPATIBLE", None)
        if flag is None:
            raise EngineBuildError(
                f"{flavour.name} {flavour.version} has no VERSION_COMPATIBLE builder flag; "
                "set engine.version_compatible: false in the spec"
            )
        config.set_flag(flag)
    if not flavour.uses_timing_cache:
        return False
    saved = (
        options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.is_file() else b""
    )
    cache = config.create_timing_cache(saved)
    if saved and config.set_timing_cache(cache, ignore_mismatch=False):
        return True
    # A cache from another GPU or TensorRT is refused: start a fresh one (it is replaced after the build).
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def build_plan(
    flavour: Flavour,
    onnx_path: Path,
    profile: ProfileDims,
    options: BuildOptions,
    configure: Callable[[Any], None] | None = None,
) -> BuiltPlan:
    """Parse, configure, build. `configure` adds flavour-specific settings to the builder config."""
    trt = flavour.trt
    logger = capturing_logger(trt)
    builder, network, _parser = parse_onnx(flavour, Path(onnx_path), logger)
    config = builder.create_builder_config()
    _add_profile(trt, builder, network, config, profile)
    cache_loaded = _configure(flavour, config, options)
    if configure is not None:
        configure(config)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        errors = [m for m in logger.messages if m.startswith("[ERROR]") or m.startswith("[INTERNAL_ERROR]")]
        raise EngineBuildError(
            f"{flavour.name} {flavour.version} parsed {onnx_path} but could not build a plan:\n  "
            + "\n  ".join((errors or logger.messages or ["(no message from TensorRT)"])[-8:])
        )
    cache_bytes = None
    if flavour.uses_timing_cache:
        cache_bytes = bytes(memoryview(config.get_timing_cache().serialize()))
    return BuiltPlan(
        plan=bytes(memoryview(serialized)),
        network=summarize_network(trt, network),
        input_types={
            network.get_input(i).name: str(network.get_input(i).dtype).rsplit(".", 1)[-1]
            for i in range(network.num_inputs)
        },
        build_seconds=seconds,
        timing_cache=cache_bytes,
        timing_cache_reused=cache_loaded,
        log=list(logger.messages),
    )
