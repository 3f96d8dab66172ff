"""The load-test and capacity stages' manifest records."""

from __future__ import annotations

from pydantic import Field

from triton_bundle.manifest import StageDetails, StageRecord


class LoadtestDetails(StageDetails):
    url: str
    protocol: str
    shape: dict[str, object] = Field(default_factory=dict)  # the ShapeSettings used, as JSON
    request_batch_size: int = 1
    workers: int = 0
    stop_reason: str | None = None
    gate: list[str] = Field(default_factory=list)  # each SLO check, explained


class LoadtestRecord(StageRecord):
    STAGE = "loadtest"
    RERUN = "triton-bundle loadtest SPEC"

    stage: str = STAGE
    details: LoadtestDetails


class TuneDetails(StageDetails):
    trials: int
    best: dict[str, object] | None = None  # the winning serving options, as JSON


class TuneRecord(StageRecord):
    STAGE = "tune"
    RERUN = "triton-bundle tune SPEC"

    stage: str = STAGE
    details: TuneDetails


class CapacityDetails(StageDetails):
    mode: str
    converged: bool
    note: str = ""
    steps: int = 0


class CapacityRecord(StageRecord):
    STAGE = "capacity"
    RERUN = "triton-bundle capacity SPEC"

    stage: str = STAGE
    details: CapacityDetails
