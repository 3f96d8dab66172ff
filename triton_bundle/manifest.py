"""The manifest: what each stage wrote, so the next stage reads it instead of guessing.

One JSON file per workdir (`artifacts/<name>/manifest.json`). Each stage replaces its own record.
Each stage types its record: a `StageRecord` subclass in its own package (`export/record.py`
`ExportRecord`, `precision/record.py` `PrecisionRecord`, ...) whose `details` is a pydantic model.
Readers ask for the type (`manifest.get(ExportRecord)`, `manifest.need(ExportRecord)`), never for keys
of another stage's details; on disk a record stays plain JSON.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triton_bundle.atomic import write_text_atomic
from triton_bundle.errors import BundleError

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".manifest.lock"


class StageDetails(BaseModel):
    """Base of every stage's typed details. Keys this version does not model (a modality's extras, a
    newer writer's additions) are kept as written, so a manifest round-trips through any reader."""

    model_config = ConfigDict(extra="allow")


class StageRecord(BaseModel):
    """What one stage produced: artifact paths (absolute), scalar metrics, and stage-specific details.

    A stage's own subclass sets STAGE (its key in the manifest), RERUN (the command that makes it) and
    a typed `details`; the base class is the record as stored."""

    STAGE: ClassVar[str] = ""
    RERUN: ClassVar[str] = ""

    stage: str
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    artifacts: dict[str, Path] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    passed: bool = True

    def stale(self, why: str) -> StaleRecordError:
        """The error for a record this version cannot use: what is wrong and which stage to re-run."""
        rerun = self.RERUN or f"the '{self.stage}' stage"
        return StaleRecordError(
            f"the '{self.stage}' record in {MANIFEST_NAME} cannot be used: {why} (written by another "
            f"version of triton-bundle, or by hand); re-run the '{self.stage}' stage: {rerun}"
        )

    def artifact(self, key: str) -> Path:
        if key not in self.artifacts:
            raise KeyError(
                f"stage '{self.stage}' recorded no artifact '{key}' (it has: {sorted(self.artifacts)})"
            )
        return self.artifacts[key]


class MissingStageError(BundleError, RuntimeError):
    """A stage needs the output of an earlier stage that has not run."""


class StaleRecordError(MissingStageError):
    """A stage's record was written by a triton-bundle whose record this version cannot read."""


R = TypeVar("R", bound=StageRecord)


def _typed(kind: type[R], record: StageRecord, model: str) -> R:
    if isinstance(record, kind):
        return record
    try:
        return kind.model_validate(record.model_dump())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise kind.model_construct(stage=kind.STAGE).stale(f"{problems} (model '{model}')") from None


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

    @classmethod
    @contextmanager
    def locked(cls, workdir: Path, model: str) -> Iterator[Manifest]:
        """Read, change and save the manifest while holding its file lock, so two processes that record
        at once (engine builds of two variants) both keep their records."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        with open(workdir / LOCK_NAME, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                manifest = cls.load(workdir, model)
                yield manifest
                manifest.save(workdir)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def record(self, record: R) -> R:
        """Store a stage's record (kept as plain JSON-shaped data); returns it as given."""
        stored = record
        if type(record) is not StageRecord:  # details as JSON data, exactly what a reload gives back
            stored = StageRecord.model_validate(
                record.model_dump(exclude={"details"})
                | {"details": record.model_dump(mode="json")["details"]}
            )
        self.stages[record.stage] = stored
        return record

    def get(self, kind: type[R]) -> R | None:
        """The typed record of stage `kind.STAGE`, None when it has not run."""
        record = self.stages.get(kind.STAGE)
        return None if record is None else _typed(kind, record, self.model)

    def need(self, kind: type[R]) -> R:
        """The typed record of an earlier stage, or a clear error that says what to run first."""
        record = self.get(kind)
        if record is None:
            raise MissingStageError(
                f"the '{kind.STAGE}' stage has not run for model '{self.model}'; run: {kind.RERUN}"
            )
        return record

    def require(self, stage: str, hint: str) -> StageRecord:
        """The stored record of an earlier stage (artifacts and metrics only: use `need` for details)."""
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
