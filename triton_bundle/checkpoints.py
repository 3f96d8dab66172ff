"""Which checkpoint a stage works on: the user's, the fine-tuned one, or the compressed student.

Export (and through its record, precision, build and the repository) serves the compress stage's
student when that stage passed for the current teacher: the teacher's weights hash is recorded, so
a re-run fine-tune or a different source.path makes a stale student fall back to the teacher.
"""

from __future__ import annotations

from pathlib import Path

from triton_bundle.compress.record import CompressRecord
from triton_bundle.manifest import Manifest, sha256_file
from triton_bundle.spec import ModelSpec

WEIGHTS = "model.safetensors"


def teacher_checkpoint(spec: ModelSpec, manifest: Manifest) -> Path:
    """The spec's source.path, else the checkpoint the finetune stage recorded."""
    if spec.source.path is not None:
        return spec.resolve(spec.source.path)
    return manifest.require("finetune", "triton-bundle finetune SPEC").artifact("checkpoint")


def weights_digest(checkpoint: Path) -> str | None:
    weights = Path(checkpoint) / WEIGHTS
    return sha256_file(weights) if weights.is_file() else None


def compressed_student(spec: ModelSpec, manifest: Manifest) -> Path | None:
    """The published student, when compress passed for the teacher the spec names today."""
    record = manifest.get(CompressRecord)
    if record is None or not record.passed or "checkpoint" not in record.artifacts:
        return None
    student = record.artifact("checkpoint")
    if not (student / "config.json").is_file():
        return None
    try:
        teacher = teacher_checkpoint(spec, manifest)
    except Exception:  # no teacher recorded any more: nothing to compare against
        return None
    same_teacher = Path(record.details.teacher) == teacher.resolve()
    same_weights = record.details.teacher_sha256 == weights_digest(teacher)
    return student if same_teacher and same_weights else None


def served_checkpoint(spec: ModelSpec, manifest: Manifest) -> Path:
    """The checkpoint to export and serve: the compressed student if current, else the teacher."""
    return compressed_student(spec, manifest) or teacher_checkpoint(spec, manifest)
