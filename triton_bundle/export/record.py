"""The export stage's manifest record: what the exported graph takes and gives, for every later stage."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from triton_bundle.export.report import JSON_NAME, MARKDOWN_NAME, ParityReport
from triton_bundle.manifest import StageDetails, StageRecord


class DecoderShape(BaseModel):
    """A KV-cache decoder's cache layout (task text-generation)."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    model_type: str | None = None


class ExportDetails(StageDetails):
    """Defaults stand for what an older or hand-written record may lack; a reader that needs a field
    asks `ExportRecord.io()` (or checks it) and gets the "re-run export" error when it is missing."""

    task: str | None = None
    modality: str = "text"  # export/tasks.py Modality; kept open so a record names one this version lacks
    exporter: str | None = None
    exporter_requested: str | None = None
    opset: int | None = None
    input_names: list[str] = Field(default_factory=list)
    output_names: list[str] = Field(default_factory=list)
    dynamic_axes: dict[str, dict[str, str]] = Field(default_factory=dict)
    graph_inputs: dict[str, list[int | str]] = Field(default_factory=dict)
    graph_outputs: dict[str, list[int | str]] = Field(default_factory=dict)
    dtypes: dict[str, str] = Field(default_factory=dict)
    labels: list[str | int] | None = None  # as the checkpoint or spec names them (class ids allowed)
    cleanup: str | None = None
    external_data: bool = False
    decoder: DecoderShape | None = None
    # Modality extras (tokenizer, max_length, pooling, preprocessing, module, source_onnx, ...) are
    # kept as written (StageDetails allows them); no other stage reads them.


class ExportRecord(StageRecord):
    STAGE = "export"
    RERUN = "triton-bundle export SPEC"

    stage: str = STAGE
    details: ExportDetails

    def io(self) -> tuple[list[str], list[str]]:
        """The graph's input and output names, which every reader of the exported graph needs."""
        if not self.details.input_names or not self.details.output_names:
            raise self.stale("it names no graph inputs / outputs")
        return list(self.details.input_names), list(self.details.output_names)


def export_artifacts(
    target: Path, onnx_file: str, checkpoint: Path, external_data: str | None = None
) -> dict[str, Path]:
    """The files every export record names: the graph (and its external weights), the parity report
    as JSON and Markdown, and the checkpoint the graph came from; absolute, so any stage can open them."""
    artifacts = {
        "onnx": (target / onnx_file).resolve(),
        "report": (target / JSON_NAME).resolve(),
        "report_markdown": (target / MARKDOWN_NAME).resolve(),
        "checkpoint": Path(checkpoint).resolve(),
    }
    if external_data:
        artifacts["onnx_data"] = (target / external_data).resolve()
    return artifacts


def parity_metrics(report: ParityReport, **task_metrics: float | None) -> dict[str, float]:
    """The worst output's absolute and relative error, then the task's own parity figures (None: not
    measured for this task, left out)."""
    metrics = {
        "max_abs": max(o.max_abs for o in report.outputs),
        "max_rel": max(o.max_rel for o in report.outputs),
    }
    return metrics | {name: value for name, value in task_metrics.items() if value is not None}
