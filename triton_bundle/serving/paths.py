"""Which model repository a command serves when the user names none."""

from __future__ import annotations

from pathlib import Path

from triton_bundle.manifest import Manifest


def default_repository(spec_name: str, workdir: Path) -> Path:
    """The repository the 'repository' stage recorded, else model_repository/<name>."""
    record = Manifest.load(workdir, spec_name).stages.get("repository")
    if record is not None and "repository" in record.artifacts:
        return record.artifact("repository")
    return Path("model_repository") / spec_name
