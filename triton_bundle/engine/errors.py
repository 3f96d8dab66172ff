"""What can go wrong building an engine; each message says what was wrong and what to do instead."""

from __future__ import annotations

from triton_bundle.errors import BundleError


class EngineError(BundleError, RuntimeError):
    """Base of the engine stage's errors."""


class ProfileError(EngineError, ValueError):
    """An ONNX input dim the spec gives no min / opt / max for, or shapes that cannot form a profile."""


class TensorRTUnavailableError(EngineError):
    """The TensorRT flavour a step needs is not installed, or there is no GPU for it to build on."""


class GraphRejectedError(EngineError):
    """TensorRT's ONNX parser refused nodes of the graph; `nodes` lists each one."""

    def __init__(self, message: str, nodes: list | None = None) -> None:
        super().__init__(message)
        self.nodes = list(nodes or [])


class EngineBuildError(EngineError):
    """The graph parsed but TensorRT could not build a plan from it."""


class SourceOnnxError(EngineError, FileNotFoundError):
    """The ONNX a variant is built from is not recorded in the manifest, or is gone from disk."""
