"""Modality -> input builder. The stage picks one by the task entry's modality, never by task name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from triton_bundle.export.errors import UnsupportedTaskError
from triton_bundle.export.prepared import PreparedExport
from triton_bundle.export.tasks import ExportTask, Modality
from triton_bundle.spec import ModelSpec

Preparer = Callable[[ModelSpec, ExportTask, Path], PreparedExport]

# The source kind each modality loads from.
SOURCE_KINDS: dict[Modality, str] = {"text": "huggingface", "vision": "huggingface", "tensor": "torch-module"}


def _text(spec: ModelSpec, task: ExportTask, source: Path) -> PreparedExport:
    from triton_bundle.export.text_inputs import prepare_text

    return prepare_text(spec, task, source)


def _vision(spec: ModelSpec, task: ExportTask, source: Path) -> PreparedExport:
    from triton_bundle.export.vision_inputs import prepare_vision

    return prepare_vision(spec, task, source)


def _tensor(spec: ModelSpec, task: ExportTask, source: Path) -> PreparedExport:
    from triton_bundle.export.tensor_inputs import prepare_tensor

    return prepare_tensor(spec, task, source)


PREPARERS: dict[Modality, Preparer] = {"text": _text, "vision": _vision, "tensor": _tensor}


def check_source_kind(spec: ModelSpec, task: ExportTask) -> None:
    expected = SOURCE_KINDS[task.modality]
    if spec.source.kind != expected:
        raise UnsupportedTaskError(
            f"task '{task.name}' ({task.modality}) exports a '{expected}' source, but source.kind is "
            f"'{spec.source.kind}'"
            + (
                "; a plain nn.Module uses task 'tensor' with its inputs declared in the spec"
                if spec.source.kind == "torch-module"
                else ""
            )
        )


def prepare(spec: ModelSpec, task: ExportTask, source: Path) -> PreparedExport:
    check_source_kind(spec, task)
    return PREPARERS[task.modality](spec, task, source)
