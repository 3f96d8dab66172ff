"""The compress stage's manifest record: the published student and the teacher it was made from.

`checkpoints.compressed_student` reads it to decide whether export serves the student (only while the
teacher is still the one the spec names, byte for byte).
"""

from __future__ import annotations

from pydantic import Field

from triton_bundle.manifest import StageDetails, StageRecord


class CompressDetails(StageDetails):
    teacher: str
    teacher_sha256: str | None = None
    selected: str | None = None  # the published student's name; None when every candidate failed
    candidates: list[str] = Field(default_factory=list)
    kept_layers: list[int] | None = None
    search: bool = False


class CompressRecord(StageRecord):
    STAGE = "compress"
    RERUN = "triton-bundle compress SPEC"

    stage: str = STAGE
    details: CompressDetails
