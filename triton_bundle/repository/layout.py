"""A repository as data (one ModelFiles per model), and the only code that turns it into files.

config.pbtxt is always protobuf text_format of a model_config_pb2.ModelConfig, never a hand-written string.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

CONFIG_FILE = "config.pbtxt"


def python_model_source(name: str) -> Path:
    """A Python-backend model the bundle ships (triton_bundle/repository/python_models/<name>.py)."""
    path = Path(str(resources.files("triton_bundle.repository") / "python_models" / f"{name}.py"))
    if not path.is_file():
        raise FileNotFoundError(f"the bundle's python model {path} is missing (broken install?)")
    return path


@dataclass
class ModelFiles:
    """One model directory: its config, and files by path relative to the model directory."""

    config: mc.ModelConfig
    files: dict[str, bytes | str | Path] = field(default_factory=dict)
    versions: tuple[int, ...] = (1,)

    @property
    def name(self) -> str:
        return self.config.name


def config_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def read_config(path: Path) -> mc.ModelConfig:
    """Parse a config.pbtxt; raises text_format.ParseError with line and column on bad text."""
    return text_format.Parse(Path(path).read_text(encoding="utf-8"), mc.ModelConfig())


_LINK_AT_BYTES = 1 << 20


def _place(source: Path, target: Path) -> None:
    # A hard link costs no disk for large ONNX / plan files; stages replace artifacts by rename, so the
    # repository keeps the bytes it was generated from. Small files (the bundle's python models, which
    # an editor may change in place) are copied, as is everything across file systems.
    if source.stat().st_size >= _LINK_AT_BYTES:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


def write_model(root: Path, model: ModelFiles) -> Path:
    directory = root / model.name
    directory.mkdir(parents=True)
    (directory / CONFIG_FILE).write_text(config_text(model.config), encoding="utf-8")
    for version in model.versions:
        (directory / str(version)).mkdir(exist_ok=True)
    for relative, content in sorted(model.files.items()):
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            _place(content, target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return directory


def write_repository(root: Path, models: list[ModelFiles], extra_files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for model in models:
        write_model(root, model)
    for relative, text in (extra_files or {}).items():
        (root / relative).write_text(text, encoding="utf-8")
    return root
