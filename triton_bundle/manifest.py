"""The manifest: what each stage wrote, so the next stage reads it instead of guessing.

One JSON file per workdir (`artifacts/<name>/manifest.json`). Each stage replaces its own record.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from triton_bundle.atomic import write_text_atomic
from triton_bundle.errors import BundleError

MANIFEST_NAME = "manifest.json"


class StageRecord(BaseModel):
    """What one stage produced: artifact paths (absolute), scalar metrics, and stage-specific details."""

    stage: str
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    artifacts: dict[str, Path] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    passed: bool = True

    def artifact(self, key: str) -> Path:
        if key not in self.artifacts:
            raise KeyError(
                f"stage '{self.stage}' recorded no artifact '{key}' (it has: {sorted(self.artifacts)})"
            )
        return self.artifacts[key]


class MissingStageError(BundleError, RuntimeError):
    """A stage needs the output of an earlier stage that has not run."""


class Manifest(BaseModel):
    model: str
    stages: dict[str, StageRecord] = Field(default_factory=dict)

    @classmethod
    def load(cls, workdir: Path, model: str) -> Manifest:
        """Read the manifest; artifact paths come back absolute, resolved against the workdir."""
        workdir = Path(workdir).resolve()
        path = workdir / MANIFEST_NAME
        if not path.is_file():
            return cls(model=model)
        manifest = cls.model_validate_json(path.read_text(encoding="utf-8"))
        for record in manifest.stages.values():
            record.artifacts = {k: workdir / v for k, v in record.artifacts.items()}
        return manifest

    def save(self, workdir: Path) -> Path:
        """Write the manifest with paths inside the workdir stored relative to it, so the artifacts
        directory can move (mounted elsewhere in a container, copied to a cluster volume)."""
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        stored = self.model_copy(deep=True)
        for record in stored.stages.values():
            record.artifacts = {k: _relative_if_inside(Path(v), workdir) for k, v in record.artifacts.items()}
        return write_text_atomic(workdir / MANIFEST_NAME, stored.model_dump_json(indent=2))

    def record(self, record: StageRecord) -> StageRecord:
        self.stages[record.stage] = record
        return record

    def require(self, stage: str, hint: str) -> StageRecord:
        """The record of an earlier stage, or a clear error that says what to run first."""
        if stage not in self.stages:
            raise MissingStageError(f"the '{stage}' stage has not run for model '{self.model}'; run: {hint}")
        return self.stages[stage]


def _relative_if_inside(path: Path, root: Path) -> Path:
    path = path if path.is_absolute() else (root / path)
    try:
        return path.resolve().relative_to(root)
    except ValueError:
        return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dump_json(path: Path, payload: Any) -> Path:
    """Write a JSON report atomically (pydantic models and Paths are serialised)."""
    if isinstance(payload, BaseModel):
        text = payload.model_dump_json(indent=2)
    else:
        text = json.dumps(payload, indent=2, default=str)
    return write_text_atomic(Path(path), text)
