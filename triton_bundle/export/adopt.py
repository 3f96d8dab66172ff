"""An ONNX file the user already has (`source.kind: onnx`): checked and adopted as the export.

There is no PyTorch model to prove parity against, so the report says so. What is checked: the file is
a valid ONNX model, its inputs are the spec's (names, ranks, dtypes), no declared dynamic dim is frozen
(the graph runs at the spec's min and max sizes), and it runs on every real eval example with finite
outputs. The model is then re-saved under `<workdir>/onnx/` (weights external past the spec's
threshold) with a verification report and the same manifest record a PyTorch export writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.export.errors import CheckpointError, ExportError
from triton_bundle.export.onnx_export import DATA_SUFFIX, check_dynamic_dims, graph_dims, graph_dtypes
from triton_bundle.export.prepared import ParityCase
from triton_bundle.export.record import ExportDetails, ExportRecord
from triton_bundle.export.report import JSON_NAME, MARKDOWN_NAME, ParityReport
from triton_bundle.export.tensor_inputs import declared_axes, load_tensors, tensor_parity_cases
from triton_bundle.manifest import Manifest, dump_json
from triton_bundle.spec import ModelSpec

EXPORTER = "imported"


def load_onnx(path: Path):
    """The model with its weights, after onnx's checker; a clear error for anything else."""
    import onnx

    if not path.is_file():
        raise CheckpointError(f"ONNX file not found: {path} (source.path)")
    try:
        onnx.checker.check_model(str(path))  # by path: works past protobuf's 2 GB limit
        return onnx.load(str(path))
    except Exception as exc:  # DecodeError, ValidationError
        raise CheckpointError(f"{path} is not a valid ONNX model: {str(exc).splitlines()[0]}") from None


def _check_inputs(spec: ModelSpec, path: Path) -> None:
    dims, dtypes = graph_dims(path), graph_dtypes(path)
    declared = {t.name: t for t in spec.inputs or []}
    if set(dims) != set(declared):
        raise ExportError(
            f"{path.name} takes inputs {sorted(dims)} but the spec declares {sorted(declared)}; expected the "
            "same names (triton-bundle init reads them from the file)"
        )
    for name, tensor in declared.items():
        if len(dims[name]) != len(tensor.shape) or dtypes[name] != tensor.dtype:
            raise ExportError(
                f"input '{name}' is {dtypes[name]} {dims[name]} in {path.name} but the spec declares "
                f"{tensor.dtype} {tensor.shape}"
            )


def _run_cases(path: Path, cases: list[ParityCase]) -> list[str]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for case in cases:
        for name, value in zip(names, session.run(None, case.feeds), strict=True):
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise ExportError(f"{path.name}: output '{name}' is not finite on case '{case.name}'")
    return names


def _report(spec: ModelSpec, target: Path, cases: list[ParityCase], checked: str, opset: int) -> ParityReport:
    report = ParityReport(
        onnx=str(target),
        exporter=EXPORTER,
        agreement_kind="tensor",
        cases=[c.name for c in cases],
        outputs=[],
        examples=sum(c.batch for c in cases[3:]),
        tolerances=spec.export.tolerances,
        passed=True,
        task=spec.task,
        opset=opset,
        exporter_requested=EXPORTER,
        frozen_dim_check=checked,
    )
    report.notes.append(
        "imported ONNX: no PyTorch source, so parity is not proven; the graph ran on every case with finite "
        "outputs"
    )
    return report


def adopt_onnx(spec: ModelSpec, workdir: Path, force: bool = False):
    """The export stage for `source.kind: onnx`; returns the stage's ExportResult."""
    import onnx

    from triton_bundle.export.stage import ONNX_DIR, ONNX_FILE, ExportResult

    source = spec.resolve(spec.source.path)
    workdir = Path(workdir)
    target_dir = workdir / ONNX_DIR
    check_overwrite(target_dir / ONNX_FILE, force)
    model = load_onnx(source)
    _check_inputs(spec, source)
    axes = declared_axes(spec.inputs or [])
    output_axes = declared_axes(spec.outputs) if spec.outputs else {}
    cases = tensor_parity_cases(spec, load_tensors(spec.resolve(spec.data.eval), spec.inputs or []), axes)
    checked = check_dynamic_dims(source, axes, cases[0].feeds, cases[2].feeds, output_axes=output_axes)
    output_names = _run_cases(source, cases)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    external = model.ByteSize() > spec.export.external_data_threshold_mb * 1024**2
    report = _report(spec, target_dir / ONNX_FILE, cases, checked, opset)
    report.external_data = ONNX_FILE + DATA_SUFFIX if external else None
    with atomic_path(target_dir, force=True) as tmp:
        tmp.mkdir()
        onnx.save_model(
            model, str(tmp / ONNX_FILE), save_as_external_data=external, location=report.external_data
        )
        dump_json(tmp / JSON_NAME, report)
        (tmp / MARKDOWN_NAME).write_text(report.markdown(), encoding="utf-8")
    record = _record(spec, workdir, source, report, list(axes), output_names, axes | output_axes)
    return ExportResult(
        onnx=(target_dir / ONNX_FILE).resolve(),
        report=report,
        report_path=(target_dir / JSON_NAME).resolve(),
        record=record,
    )


def _record(spec, workdir: Path, source: Path, report: ParityReport, inputs, outputs, axes) -> ExportRecord:
    from triton_bundle.export.stage import ONNX_DIR, ONNX_FILE

    target = workdir / ONNX_DIR
    onnx_file = (target / ONNX_FILE).resolve()
    artifacts = {
        "onnx": onnx_file,
        "report": (target / JSON_NAME).resolve(),
        "report_markdown": (target / MARKDOWN_NAME).resolve(),
        "checkpoint": source.resolve(),
    }
    if report.external_data:
        artifacts["onnx_data"] = (target / report.external_data).resolve()
    manifest = Manifest.load(workdir, spec.name)
    record = manifest.record(
        ExportRecord(
            artifacts=artifacts,
            metrics={"cases_run": float(len(report.cases))},
            details=ExportDetails(
                task=spec.task,
                modality="tensor",
                exporter=EXPORTER,
                exporter_requested=EXPORTER,
                opset=report.opset,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes={k: {str(a): n for a, n in v.items()} for k, v in axes.items() if v},
                graph_inputs=graph_dims(onnx_file),
                graph_outputs=graph_dims(onnx_file, "output"),
                dtypes=graph_dtypes(onnx_file),
                labels=spec.labels,
                cleanup=None,
                external_data=report.external_data is not None,
                source_onnx=str(source.resolve()),
                input_dtypes={t.name: t.dtype for t in spec.inputs or []},
            ),
        )
    )
    manifest.save(workdir)
    return record
