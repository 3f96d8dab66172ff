"""Optional graph clean-up (onnxslim: constant folding, dead-node and redundant-op removal).

The cleaned graph is only a candidate: the stage keeps it when it passes the same parity and
frozen-dim checks as the raw export, and records either way in the verification report.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import onnx

from triton_bundle.export.onnx_export import DEFAULT_EXTERNAL_THRESHOLD, save_onnx

TOOL = "onnxslim"


@dataclass(frozen=True)
class CleanedGraph:
    path: Path | None  # None when clean-up could not run
    nodes_before: int
    nodes_after: int | None
    external_data: str | None = None
    error: str | None = None


def clean_graph(
    source: Path, target: Path, external_threshold: int = DEFAULT_EXTERNAL_THRESHOLD
) -> CleanedGraph:
    """Write a cleaned copy of `source` at `target`; never raises (a failed clean-up keeps the raw graph)."""
    model = onnx.load(str(source))
    before = len(model.graph.node)
    try:
        import onnxslim
    except ImportError:
        return CleanedGraph(None, before, None, error="onnxslim is not installed (pip install onnxslim)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            cleaned = onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises whatever its passes raise; the raw graph is still good
        return CleanedGraph(None, before, None, error=f"{type(exc).__name__}: {exc}")
    external = save_onnx(cleaned, target, external_threshold)
    return CleanedGraph(target, before, len(cleaned.graph.node), external_data=external)
