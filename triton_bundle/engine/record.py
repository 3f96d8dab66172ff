"""The engine stage's manifest record: one `EngineBuild` per built or checked variant.

Keys are the variant (`fp16`) for GPU builds and `<variant>_aot` for ahead-of-time checks; each run
adds its key and keeps the others (under the manifest's lock: two builds may record at once).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from triton_bundle.engine.manifest import ProfileDims
from triton_bundle.engine.profiles import TokenLengthStats
from triton_bundle.manifest import StageRecord


class EngineBuild(BaseModel):
    mode: Literal["gpu", "aot"]
    passed: bool
    source_onnx: str
    profile_source: str
    profile: ProfileDims
    profile_notes: list[str] = Field(default_factory=list)
    token_lengths: TokenLengthStats | None = None
    builder: str | None = None
    tensorrt_version: str | None = None
    gpu_name: str | None = None  # GPU builds
    compute_capability: str | None = None
    layer_precisions: dict[str, int] | None = None
    compute_layer_precisions: dict[str, int] | None = None
    unsupported_nodes: list[str] | None = None  # ahead-of-time checks
    error: str | None = None


class EngineRecord(StageRecord):
    STAGE = "engine"
    RERUN = "triton-bundle build SPEC"

    stage: str = STAGE
    details: dict[str, EngineBuild] = Field(default_factory=dict)

    def build(self, key: str) -> EngineBuild | None:
        return self.details.get(key)
