"""The fine-tune stage's manifest record (classifier fine-tuning and the from-scratch decoder trainer)."""

from __future__ import annotations

from pydantic import Field

from triton_bundle.manifest import StageDetails, StageRecord


class FinetuneDetails(StageDetails):
    base_model: str | None = None
    labels: list[str | int] = Field(default_factory=list)  # classifiers: the label order trained
    parameters: int | None = None  # decoders trained from scratch


class FinetuneRecord(StageRecord):
    STAGE = "finetune"
    RERUN = "triton-bundle finetune SPEC"

    stage: str = STAGE
    details: FinetuneDetails
