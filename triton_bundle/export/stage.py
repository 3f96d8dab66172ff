"""The export stage: model -> ONNX -> frozen-dim check -> clean-up -> parity on real data -> report.

The ONNX only lands at `<workdir>/onnx/model.onnx` when parity holds; a failed export leaves its
report under `<workdir>/onnx-rejected/` and nothing where a good model is expected.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.checkpoints import served_checkpoint
from triton_bundle.export.cleanup import TOOL as CLEANUP_TOOL
from triton_bundle.export.cleanup import clean_graph
from triton_bundle.export.errors import ExportError, FrozenDimensionError, ParityError
from triton_bundle.export.modalities import check_source_kind, prepare
from triton_bundle.export.onnx_export import (
    DATA_SUFFIX,
    ExportOutcome,
    check_dynamic_dims,
    export_module,
    graph_dims,
    graph_dtypes,
)
from triton_bundle.export.parity import compare
from triton_bundle.export.prepared import PreparedExport
from triton_bundle.export.record import ExportDetails, ExportRecord, export_artifacts, parity_metrics
from triton_bundle.export.report import JSON_NAME, MARKDOWN_NAME, CleanupRecord, ParityReport
from triton_bundle.export.tasks import ExportTask, get_task, stage_function
from triton_bundle.manifest import Manifest, dump_json
from triton_bundle.spec import ModelSpec

ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
REJECTED_DIR = f"{ONNX_DIR}-rejected"


@dataclass(frozen=True)
class ExportResult:
    """What the export made: the graph, its parity report, and the manifest record derived from both."""

    onnx: Path
    report: ParityReport
    report_path: Path
    record: ExportRecord

    @property
    def checkpoint(self) -> Path:
        """The PyTorch checkpoint the graph was exported from (and proven against)."""
        return self.record.artifact("checkpoint")


def checkpoint_path(spec: ModelSpec, manifest: Manifest) -> Path:
    """The compress stage's student when it passed for this teacher, else the spec's source.path,
    else the checkpoint the finetune stage recorded."""
    return served_checkpoint(spec, manifest)


def _source(spec: ModelSpec, task: ExportTask, manifest: Manifest) -> Path:
    if task.modality == "tensor":  # the weights file; the tensor preparer checks it is there
        return spec.resolve(spec.source.weights) or spec.base_dir
    return checkpoint_path(spec, manifest)


def _labels(spec: ModelSpec, prepared: PreparedExport) -> list[str] | None:
    if spec.labels and prepared.labels and len(spec.labels) != len(prepared.labels):
        raise ExportError(
            f"the spec names {len(spec.labels)} labels {spec.labels} but the model has {len(prepared.labels)} "
            "outputs per example; expected one label per class"
        )
    return spec.labels or prepared.labels


def _verify(spec: ModelSpec, task: ExportTask, prepared: PreparedExport, onnx_path: Path, exporter: str):
    """Frozen-dim check, then parity on every real case."""
    try:
        checked = check_dynamic_dims(
            onnx_path,
            prepared.input_axes,
            prepared.min_case.feeds,
            prepared.max_case.feeds,
            output_axes=prepared.output_axes,
        )
    except FrozenDimensionError as exc:
        raise FrozenDimensionError(f"{exc} (graph written by the {exporter} exporter)") from None
    report = compare(
        prepared.module,
        onnx_path,
        prepared.cases,
        prepared.output_names,
        task.agreement,
        spec.export.tolerances,
        exporter,
        masks=prepared.masks,
    )
    report.frozen_dim_check = checked
    return report


def _try_cleanup(spec, task, prepared, raw: Path, scratch: Path, exporter: str, threshold: int):
    """(report, record): the cleaned graph's report when it passes every check, else None."""
    cleaned = clean_graph(raw, scratch / ONNX_FILE, threshold)
    if cleaned.path is None:
        return None, CleanupRecord(
            tool=CLEANUP_TOOL, kept=False, nodes_before=cleaned.nodes_before, reason=cleaned.error or ""
        )
    record = CleanupRecord(
        tool=CLEANUP_TOOL,
        kept=False,
        nodes_before=cleaned.nodes_before,
        nodes_after=cleaned.nodes_after,
        reason="",
    )
    try:
        report = _verify(spec, task, prepared, cleaned.path, exporter)
    except Exception as exc:  # a clean-up that breaks the graph in any way only costs the clean-up
        record.reason = f"the cleaned graph failed its checks ({exc}); the raw export is used"
        return None, record
    if not report.passed:
        record.reason = (
            f"parity failed on the cleaned graph ({'; '.join(report.failures)}); the raw export is used"
        )
        return None, record
    record.kept = True
    record.reason = "parity holds on every case"
    return report, record


def _write_report(directory: Path, report: ParityReport) -> None:
    dump_json(directory / JSON_NAME, report)
    (directory / MARKDOWN_NAME).write_text(report.markdown(), encoding="utf-8")


def _move_model(source_dir: Path, target_dir: Path) -> None:
    for name in (ONNX_FILE, ONNX_FILE + DATA_SUFFIX):
        if (source_dir / name).exists():
            shutil.move(str(source_dir / name), str(target_dir / name))


def publish_or_reject(
    report: ParityReport, model_dir: Path, tmp: Path, target: Path, rejected: Path, what: str, name: str
) -> None:
    """A passing export goes to `tmp` (renamed into `target` by the caller's atomic_path); a failing one
    leaves only its report under `rejected` and raises, so nothing half-written sits where a good one is."""
    if not report.passed:
        rejected.mkdir(parents=True, exist_ok=True)
        _write_report(rejected, report)
        raise ParityError(
            f"{what} of '{name}' failed parity: {'; '.join(report.failures)} "
            f"(report: {rejected / MARKDOWN_NAME}; nothing was written to {target})"
        )
    tmp.mkdir()
    _move_model(model_dir, tmp)
    _write_report(tmp, report)


def export_model(spec: ModelSpec, workdir: Path, force: bool = False) -> ExportResult:
    """Export the spec's model to ONNX and prove parity on real data; record it in the manifest."""
    if spec.source.kind == "onnx":  # already ONNX: checked and adopted, no PyTorch to compare with
        from triton_bundle.export.adopt import adopt_onnx

        return adopt_onnx(spec, workdir, force)
    task: ExportTask = get_task(spec.task)
    check_source_kind(spec, task)
    if task.export_stage:  # e.g. text-generation: a KV-cache graph with its own parity proof
        return stage_function(task.export_stage)(spec, workdir, force)
    workdir = Path(workdir)
    target = workdir / ONNX_DIR
    check_overwrite(target / ONNX_FILE, force)
    manifest = Manifest.load(workdir, spec.name)
    prepared = prepare(spec, task, _source(spec, task, manifest))
    labels = _labels(spec, prepared)
    threshold = int(spec.export.external_data_threshold_mb * 1024**2)

    rejected = workdir / REJECTED_DIR
    workdir.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, force=True) as tmp, tempfile.TemporaryDirectory(dir=workdir) as scratch_dir:
        scratch = Path(scratch_dir)
        (scratch / "raw").mkdir()
        (scratch / "clean").mkdir()
        raw_path = scratch / "raw" / ONNX_FILE
        example = {name: torch.from_numpy(v) for name, v in prepared.opt_case.feeds.items()}
        outcome: ExportOutcome = export_module(
            prepared.module,
            example,
            raw_path,
            prepared.output_names,
            prepared.input_axes | prepared.output_axes,
            opset=spec.export.opset,
            exporter=spec.export.exporter,
            fallback=spec.export.fallback,
            external_threshold=threshold,
        )
        report, cleanup, chosen = None, None, scratch / "raw"
        if spec.export.simplify:
            report, cleanup = _try_cleanup(
                spec, task, prepared, raw_path, scratch / "clean", outcome.exporter, threshold
            )
            if report is not None:
                chosen = scratch / "clean"
        if report is None:
            report = _verify(spec, task, prepared, raw_path, outcome.exporter)
        _describe(report, spec, prepared, outcome, cleanup, chosen)
        report.onnx = str(target / ONNX_FILE)
        publish_or_reject(report, chosen, tmp, target, rejected, "ONNX export", spec.name)
    shutil.rmtree(rejected, ignore_errors=True)
    record = _record(spec, workdir, manifest, prepared, outcome, report, labels)
    return ExportResult(
        onnx=(target / ONNX_FILE).resolve(),
        report=report,
        report_path=(target / JSON_NAME).resolve(),
        record=record,
    )


def _describe(report, spec, prepared, outcome: ExportOutcome, cleanup, chosen: Path) -> None:
    """What the stage knows beyond parity: exporter history, opset, axes, clean-up, external data."""
    report.task = spec.task
    report.opset = outcome.opset
    report.exporter_requested = spec.export.exporter
    report.exporter_attempts = list(outcome.attempts)
    axes = prepared.input_axes | prepared.output_axes
    report.dynamic_axes = {k: {str(a): n for a, n in v.items()} for k, v in axes.items() if v}
    report.cleanup = cleanup
    report.examples = sum(case.batch for case in prepared.cases[3:])  # the eval set, not the shape cases
    if outcome.opset != spec.export.opset:
        report.notes.append(
            f"requested opset {spec.export.opset}; the {outcome.exporter} exporter wrote opset {outcome.opset}"
        )
    external = chosen / (ONNX_FILE + DATA_SUFFIX)
    report.external_data = external.name if external.exists() else None


def _record(spec, workdir, manifest, prepared, outcome, report, labels) -> ExportRecord:
    target = workdir / ONNX_DIR
    onnx_file = (target / ONNX_FILE).resolve()
    dtypes = graph_dtypes(onnx_file)
    record = manifest.record(
        ExportRecord(
            artifacts=export_artifacts(target, ONNX_FILE, prepared.source, report.external_data),
            metrics=parity_metrics(
                report, label_agreement=report.label_agreement, min_cosine=report.min_cosine
            ),
            details=ExportDetails(
                task=spec.task,
                modality=get_task(spec.task).modality,
                exporter=outcome.exporter,
                exporter_requested=spec.export.exporter,
                opset=outcome.opset,
                input_names=prepared.input_names,
                output_names=prepared.output_names,
                dynamic_axes=report.dynamic_axes,
                graph_inputs=graph_dims(onnx_file),
                graph_outputs=graph_dims(onnx_file, "output"),
                dtypes=dtypes,
                labels=labels,
                cleanup=report.cleanup.tool if report.cleanup and report.cleanup.kept else None,
                external_data=report.external_data is not None,
                **prepared.details,
            ),
        )
    )
    manifest.save(workdir)
    return record
