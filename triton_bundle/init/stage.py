"""`init`: a spec.yaml written from what a checkpoint (or a module + sample) and the data files say.

Nothing is guessed from the model's name: the task comes from the config's head, labels from id2label,
the sequence limit from the tokenizer and position embeddings, the image size from the preprocessor
config, a module's tensors from one dry run, the data fields from the data file. The spec is validated
by the same loader every stage uses before it is renamed into place; an existing spec needs `force`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triton_bundle.atomic import atomic_path
from triton_bundle.errors import BundleError
from triton_bundle.init.render import render
from triton_bundle.spec import ModelSpec, Range, ShapesSpec, SpecError, load_spec

# Directory names that say nothing about the model: the parent's name is used instead.
_GENERIC_DIRS = re.compile(r"^(checkpoint(-\d+)?|model|final|best|output|outputs|export)$")


class InitError(BundleError):
    """init was given something it cannot write a spec from."""


@dataclass
class InitOptions:
    data: Path  # eval data: held-out texts, images, or a module's .npz sample
    out: Path = Path("spec.yaml")
    checkpoint: Path | None = None
    module: str | None = None  # 'package.module:Class' or 'path/to/file.py:Class'
    weights: Path | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    train: Path | None = None
    name: str | None = None
    task: str | None = None
    text_field: str | None = None
    label_field: str | None = None
    image_field: str | None = None
    allow_pickle: bool = False
    force: bool = False


@dataclass
class InitResult:
    spec_path: Path
    spec: ModelSpec
    notes: list[str]
    next_commands: list[str]


def slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return name or "model"


def default_name(path: Path) -> str:
    path = path.resolve()
    if _GENERIC_DIRS.match(path.name.lower()) and path.parent.name:
        path = path.parent
    return slug(path.stem if path.is_file() else path.name)


def rel(path: Path, spec_dir: Path) -> str:
    """A path as the spec should hold it: relative to the spec's directory (specs move with their data)."""
    path = Path(path).resolve()
    try:
        relative = os.path.relpath(path, spec_dir.resolve())
    except ValueError:  # another drive (Windows)
        return str(path)
    # A path that climbs far out of the spec's tree is clearer (and as portable) written in full.
    return str(path) if relative.startswith(f"..{os.sep}..{os.sep}") else relative


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def shapes_entry(sequence: Range | None) -> dict[str, Any]:
    defaults = ShapesSpec()
    shapes: dict[str, Any] = {"batch": defaults.batch.model_dump()}
    if sequence is not None:
        shapes["sequence"] = sequence.model_dump()
    return shapes


def header(source: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Written by `triton-bundle init` from {source} ({stamp}).\n"
        "Each value says where it came from; edit freely: every stage validates this file.\n"
        "Relative paths resolve against this file's directory; outputs go to artifacts/<name>/."
    )


def next_commands(spec_path: Path) -> list[str]:
    spec = str(spec_path)
    return [
        f"triton-bundle export {spec}",
        f"triton-bundle precision {spec}",
        f"triton-bundle repo generate {spec}",
        f"triton-bundle serve {spec}",
        f"triton-bundle loadtest {spec} --serve",
    ]


def write_spec(out: Path, text: str, force: bool) -> ModelSpec:
    """Validate through the spec loader, then rename into place; a spec that fails is never left behind."""
    with atomic_path(out, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
        try:
            spec = load_spec(tmp)
        except SpecError as exc:  # name the file the user asked for, not the temporary one
            raise InitError(
                f"the spec init wrote does not validate, nothing written: {exc}".replace(str(tmp), str(out))
            ) from None
    spec.base_dir = out.resolve().parent
    return spec


def init_spec(options: InitOptions) -> InitResult:
    """Write options.out from the checkpoint or module + sample; returns the validated spec."""
    from triton_bundle.init.sources import hf_entries, module_entries

    out = Path(options.out)
    if out.exists() and not options.force:
        raise InitError(f"{out} already exists; pass --force to replace it")
    if out.is_dir():
        raise InitError(f"{out} is a directory; expected the path of the spec file to write")
    spec_dir = out.resolve().parent
    if options.module:
        source, entries, notes = module_entries(options, spec_dir)
    elif options.checkpoint is not None:
        if Path(options.checkpoint).suffix.lower() == ".onnx":
            from triton_bundle.init.onnx_source import onnx_entries

            source, entries, notes = onnx_entries(options, spec_dir)
        else:
            source, entries, notes = hf_entries(options, spec_dir)
    else:
        raise InitError(
            "give a checkpoint directory or an .onnx file, or --module and --weights for a plain nn.Module"
        )
    spec = write_spec(out, render(header(source), entries), options.force)
    return InitResult(out, spec, notes, next_commands(out))
