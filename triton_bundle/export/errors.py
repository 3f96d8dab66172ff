"""Export failures, each naming what was wrong and what was expected."""

from __future__ import annotations

from triton_bundle.errors import BundleError


class ExportError(BundleError):
    """Base of export failures."""


class CheckpointError(ExportError):
    """A checkpoint directory that lacks files the export needs."""


class UnsupportedTaskError(ExportError):
    """The task is unknown, or the checkpoint's architecture does not support it."""


class FrozenDimensionError(ExportError):
    """A dim the spec declares dynamic was exported as a constant."""


class UnsupportedOperatorError(ExportError):
    """Neither exporter could convert an operation of the model."""


class ParityError(ExportError):
    """ONNX outputs differ from PyTorch's beyond the spec's tolerances."""


class SourceModuleError(ExportError):
    """A torch-module source that cannot be imported, constructed or loaded with its weights."""


class ExportDataError(ExportError):
    """Evaluation data (images, tensors) that is missing or does not match the model's declared inputs."""
