"""Every artifact write is atomic: a process killed (SIGKILL, no clean-up) at any moment leaves each
artifact either as it was or complete, never a half file that looks valid.

Real kills of real processes: a writer looping over file and directory artifacts, the repository
generator, and the export stage killed right before it commits its model.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx
import pytest

from triton_bundle.repository.validate import validate_repository
from triton_bundle.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def _spawn(script: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the writer exited early: {process.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _visible(directory: Path) -> set[str]:
    """What a user or the next stage sees: everything but the hidden temp entries atomic writes use."""
    return {
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if not any(part.startswith(".") for part in p.relative_to(directory).parts)
    }


# ------------------------------------------------------------------------------ the atomic helpers


WRITER = """
import sys
from pathlib import Path
from triton_bundle.atomic import atomic_path, write_bytes_atomic

root = Path(sys.argv[1])
(root / "started").touch()
generation = 0
while True:
    generation += 1
    payload = bytes([generation % 251]) * (4 << 20)
    write_bytes_atomic(root / "blob.bin", payload + b"END")
    with atomic_path(root / "dir") as tmp:
        tmp.mkdir()
        for i in range(20):
            (tmp / f"part{i}.bin").write_bytes(payload[: 64 << 10])
        (tmp / "COMPLETE").write_text(str(generation))
"""


@pytest.mark.slow
def test_writer_killed_at_random_moments_never_leaves_a_partial_artifact(tmp_path: Path) -> None:
    rng = random.Random(7)
    for round_ in range(8):
        process = _spawn(WRITER, str(tmp_path))
        _wait_for(tmp_path / "started", process, timeout_s=60)
        time.sleep(rng.uniform(0.05, 1.5))
        _kill(process)
        (tmp_path / "started").unlink()
        blob = tmp_path / "blob.bin"
        if blob.exists():
            data = blob.read_bytes()
            assert len(data) == (4 << 20) + 3 and data.endswith(b"END"), f"round {round_}: torn blob.bin"
        directory = tmp_path / "dir"
        if directory.exists():
            parts = sorted(p.name for p in directory.iterdir())
            assert len(parts) == 21 and "COMPLETE" in parts, f"round {round_}: partial dir {parts}"
        # A killed writer leaves only hidden temp entries, and a restart is not blocked by them.
        assert _visible(tmp_path) <= {
            "blob.bin",
            "dir",
            *(f"dir/part{i}.bin" for i in range(20)),
            "dir/COMPLETE",
        }


# ------------------------------------------------------------------------------ repository generation


GENERATE = """
import sys
from pathlib import Path
from triton_bundle.repository.generate import generate_repository
from triton_bundle.spec import load_spec

spec = load_spec(sys.argv[1])
workdir, out = Path(sys.argv[2]), Path(sys.argv[3])
(out.parent / "started").touch()
while True:
    generate_repository(spec, workdir, out_dir=out, force=True)
"""


@pytest.mark.slow
def test_repository_generation_killed_mid_way_leaves_the_old_or_the_new_repository(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    from triton_bundle.repository.generate import generate_repository

    workdir = tmp_path / "work"
    shutil.copytree(demo_workdir, workdir)
    out = tmp_path / "repo"
    generate_repository(demo_spec, workdir, out_dir=out)
    files = _visible(out)
    spec_file = demo_spec.base_dir / "spec.yaml"
    rng = random.Random(3)
    for round_ in range(4):
        process = _spawn(GENERATE, str(spec_file), str(workdir), str(out))
        _wait_for(tmp_path / "started", process, timeout_s=120)
        time.sleep(rng.uniform(0.1, 2.5))
        _kill(process)
        (tmp_path / "started").unlink()
        assert _visible(out) == files, f"round {round_}: files differ"
        errors = [p for p in validate_repository(out) if p.severity == "error"]
        assert errors == [], f"round {round_}: {errors}"
        json.loads((workdir / "manifest.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ export


EXPORT = """
import sys, time
from pathlib import Path
from triton_bundle import atomic
from triton_bundle.export.stage import export_model
from triton_bundle.spec import load_spec

spec = load_spec(sys.argv[1])
spec.export.simplify = False  # the clean-up pass would only double the time to the kill
workdir = Path(sys.argv[2])
commit = atomic._exchange


def kill_point(a, b):
    # Everything is written, the rename has not happened: the worst moment to die.
    if Path(b) == workdir / "onnx":
        (workdir.parent / "committing").touch()
        time.sleep(600)
    return commit(a, b)


atomic._exchange = kill_point
export_model(spec, workdir, force=True)
"""


@pytest.mark.slow
def test_export_killed_before_its_commit_keeps_the_previous_model(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    shutil.copytree(demo_workdir, workdir)
    model = workdir / "onnx" / "model.onnx"
    before = _sha(model)
    manifest_before = (workdir / "manifest.json").read_text(encoding="utf-8")
    process = _spawn(EXPORT, str(demo_spec.base_dir / "spec.yaml"), str(workdir))
    _wait_for(tmp_path / "committing", process, timeout_s=900)
    _kill(process)

    assert _sha(model) == before, "the visible model changed"
    assert (workdir / "manifest.json").read_text(encoding="utf-8") == manifest_before
    # The complete new model sits in a hidden temp directory that nothing reads.
    staged = [p for p in workdir.glob(".onnx.*.tmp/onnx/model.onnx")]
    assert len(staged) == 1
    onnx.checker.check_model(onnx.load(str(staged[0])))
