"""The repository stage's manifest record: which models play which role, for which target."""

from __future__ import annotations

from pydantic import Field

from triton_bundle.manifest import StageDetails, StageRecord


class RepositoryDetails(StageDetails):
    target: str
    models: dict[str, str]  # role (ensemble, tokenizer, tensor, postprocess, preprocess, entry) -> model
    versions: dict[str, str] = Field(default_factory=dict)  # tensor model version -> precision variant
    padding: str | None = None
    max_length: int | None = None
    options: dict[str, object] = Field(default_factory=dict)  # the RepositoryOptions used, as JSON
    notes: list[str] = Field(default_factory=list)


class RepositoryRecord(StageRecord):
    STAGE = "repository"
    RERUN = "triton-bundle repo generate SPEC"

    stage: str = STAGE
    details: RepositoryDetails
