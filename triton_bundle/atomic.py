"""Atomic artifact writes: a killed export or build never leaves a half file that looks valid."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from triton_bundle.errors import BundleError


class ArtifactExistsError(BundleError, FileExistsError):
    """An artifact is already there and --force was not given."""


def check_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise ArtifactExistsError(f"{path} already exists; pass --force to replace it")


@contextlib.contextmanager
def atomic_path(target: Path, *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it over `target` only if the block succeeds.

    Works for files and directories: write whatever you like at the yielded path.
    """
    target = Path(target)
    check_overwrite(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written for {target}")
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_text_atomic(target: Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_bytes_atomic(target: Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target
