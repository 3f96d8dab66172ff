"""Manifest round trip and atomic artifact writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from triton_bundle.atomic import ArtifactExistsError, atomic_path
from triton_bundle.manifest import Manifest, MissingStageError, StageRecord


def test_manifest_round_trip_and_missing_stage_hint(tmp_path: Path) -> None:
    manifest = Manifest.load(tmp_path, "m")
    manifest.record(
        StageRecord(stage="export", artifacts={"onnx": tmp_path / "model.onnx"}, metrics={"x": 1.0})
    )
    manifest.save(tmp_path)
    again = Manifest.load(tmp_path, "m")
    assert again.require("export", "-").artifact("onnx") == tmp_path / "model.onnx"
    with pytest.raises(MissingStageError, match="run: triton-bundle precision SPEC"):
        again.require("precision", "triton-bundle precision SPEC")
    with pytest.raises(KeyError, match="recorded no artifact 'plan'"):
        again.require("export", "-").artifact("plan")


def test_failed_write_leaves_previous_artifact_intact(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"], "no temp files left behind"


def test_directory_artifacts_are_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "repo"
    with atomic_path(target) as tmp:
        (tmp / "a").mkdir(parents=True)
    with atomic_path(target) as tmp:
        (tmp / "b").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["b"]


def test_existing_artifact_needs_force(tmp_path: Path) -> None:
    target = tmp_path / "x"
    target.write_text("1")
    with pytest.raises(ArtifactExistsError, match="pass --force"), atomic_path(target, force=False):
        pass


def test_manifest_survives_moving_the_workdir(tmp_path: Path) -> None:
    old = tmp_path / "old"
    outside = tmp_path / "user-checkpoint"
    manifest = Manifest(model="m")
    manifest.record(
        StageRecord(stage="export", artifacts={"onnx": old / "onnx" / "model.onnx", "ckpt": outside})
    )
    manifest.save(old)
    assert '"onnx/model.onnx"' in (old / "manifest.json").read_text(), "paths inside the workdir are relative"
    new = tmp_path / "mounted-elsewhere"
    old.rename(new)
    record = Manifest.load(new, "m").require("export", "-")
    assert record.artifact("onnx") == new.resolve() / "onnx" / "model.onnx"
    assert record.artifact("ckpt") == outside, "paths outside the workdir stay absolute"
