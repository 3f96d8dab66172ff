"""A plain torch nn.Module from the spec: import path + constructor arguments + a safetensors file."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from torch import nn

from triton_bundle.export.errors import CheckpointError, SourceModuleError
from triton_bundle.spec import ModelSpec, SourceSpec

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _import_file(file: Path) -> ModuleType:
    # A unique module name per file path, so two specs' 'model.py' never shadow each other.
    name = f"triton_bundle_user_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise SourceModuleError(f"cannot import {file} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise SourceModuleError(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    return module


def import_class(ref: str, base_dir: Path) -> type:
    """'package.module:Class' or 'path/to/file.py:Class' (relative to the spec's directory)."""
    where, sep, attr = ref.rpartition(":")
    if not sep or not where or not attr:
        raise SourceModuleError(
            f"source.module '{ref}' should look like 'package.module:ClassName' or 'path/to/model.py:ClassName'"
        )
    if where.endswith(".py"):
        file = Path(where).expanduser()
        file = file if file.is_absolute() else (base_dir / file).resolve()
        if not file.is_file():
            raise SourceModuleError(f"source.module names {file}, which does not exist")
        module = _import_file(file)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise SourceModuleError(
                f"cannot import '{where}' for source.module '{ref}' ({exc}); install the package, or give "
                "a file path 'path/to/model.py:ClassName'"
            ) from None
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise SourceModuleError(f"'{where}' has no attribute '{attr}' (source.module '{ref}')")
        target = getattr(target, part)
    if not isinstance(target, type) or not issubclass(target, nn.Module):
        raise SourceModuleError(f"source.module '{ref}' is not an nn.Module subclass")
    return target


def load_weights(path: Path, allow_pickle: bool) -> dict:
    import torch
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(
            f"weights file not found: {path} (source.weights; expected a .safetensors file)"
        )
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix in PICKLE_SUFFIXES and allow_pickle:
        return torch.load(path, map_location="cpu", weights_only=True)
    raise CheckpointError(
        f"{path}: expected a .safetensors file"
        + (" (pickled weights need source.allow_pickle: true)" if path.suffix in PICKLE_SUFFIXES else "")
    )


def build_module(spec: ModelSpec) -> tuple[nn.Module, Path]:
    """The constructed module with its weights loaded (strictly: every key must match)."""
    return build_from_source(spec.source, spec.base_dir)


def build_from_source(source: SourceSpec, base_dir: Path) -> tuple[nn.Module, Path]:
    """build_module for a source section alone (`init` runs one before any spec exists)."""
    cls = import_class(str(source.module), base_dir)
    try:
        module = cls(**source.kwargs)
    except TypeError as exc:
        raise SourceModuleError(f"cannot construct {cls.__name__}(**{source.kwargs}): {exc}") from None
    if source.weights is None:
        raise CheckpointError(
            f"source.weights is not set: a torch-module export needs the trained weights of {cls.__name__} "
            "as a .safetensors file"
        )
    weights = Path(source.weights).expanduser()
    weights = weights if weights.is_absolute() else (base_dir / weights).resolve()
    state = load_weights(weights, source.allow_pickle)
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(
            f"{weights} does not fit {cls.__name__}: {str(exc).splitlines()[-1].strip()}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{weights} does not fit {cls.__name__}(**{source.kwargs}): missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return module.eval(), weights
