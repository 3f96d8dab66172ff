"""The operate stage's manifest record: the thresholds its alerts were written with."""

from __future__ import annotations

from triton_bundle.manifest import StageDetails, StageRecord
from triton_bundle.operate.rules import Thresholds


class OperateDetails(StageDetails):
    thresholds: Thresholds


class OperateRecord(StageRecord):
    STAGE = "operate"
    RERUN = "triton-bundle ops generate SPEC"

    stage: str = STAGE
    details: OperateDetails
