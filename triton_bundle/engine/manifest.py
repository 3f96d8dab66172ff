"""The engine manifest written beside every TensorRT plan, checked before serving.

An engine runs only on the TensorRT version and GPU compute capability it was built for.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from triton_bundle.shapes import Profile

ENGINE_MANIFEST_NAME = "engine.json"


class ProfileDims(BaseModel):
    """One optimisation profile: per input, min / opt / max shapes."""

    shapes: Profile


class EngineManifest(BaseModel):
    engine_file: str = "model.plan"
    builder: str = Field(description="'tensorrt' (datacenter) or 'tensorrt_rtx' (ahead-of-time check)")
    tensorrt_version: str
    gpu_name: str | None = None
    compute_capability: str | None = Field(None, description="'9.0'; None for ahead-of-time builds")
    precision: str
    strongly_typed: bool = True
    profiles: list[ProfileDims]
    source_onnx: str
    source_onnx_sha256: str
    build_options: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    layer_precisions: dict[str, int] = Field(
        default_factory=dict, description="layer count per precision, from the engine inspector"
    )
    triton_image_tag: str | None = Field(None, description="YY.MM of the Triton image this engine is for")
    # Added by the engine stage; optional so manifests written before them still load.
    layer_precisions_source: str | None = Field(
        None,
        description="'engine_inspector' (what TensorRT chose, GPU builds) or 'network_definition' "
        "(what the graph asks for, before fusion: ahead-of-time builds)",
    )
    compute_layer_precisions: dict[str, int] = Field(
        default_factory=dict, description="matrix multiply / convolution layers per precision"
    )
    input_types: dict[str, str] = Field(
        default_factory=dict, description="engine input name -> TensorRT type"
    )
    engine_sha256: str | None = None
    build_seconds: float | None = None

    @classmethod
    def read(cls, path: Path) -> EngineManifest:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
