"""The export stage: checkpoint -> ONNX -> parity on real data -> report + manifest record.

The ONNX only lands at `<workdir>/onnx/model.onnx` when parity holds; a failed export leaves its
report under `<workdir>/onnx-rejected/` and nothing where a good model is expected.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.data import load_texts
from triton_bundle.export.errors import ParityError
from triton_bundle.export.loaders import LoadedTextModel, load_text_model
from triton_bundle.export.onnx_export import check_dynamic_dims, export_module, graph_dims
from triton_bundle.export.parity import ParityCase, ParityReport, compare
from triton_bundle.export.tasks import ExportTask, get_task
from triton_bundle.manifest import Manifest, StageRecord, dump_json
from triton_bundle.spec import ModelSpec

ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class ExportResult:
    onnx: Path
    report: ParityReport
    report_path: Path


def checkpoint_path(spec: ModelSpec, manifest: Manifest) -> Path:
    """The spec's source.path, else the checkpoint the finetune stage recorded."""
    if spec.source.path is not None:
        return spec.resolve(spec.source.path)
    return manifest.require("finetune", "triton-bundle finetune SPEC").artifact("checkpoint")


def _encode(loaded: LoadedTextModel, texts: list[str], **kwargs) -> dict[str, np.ndarray]:
    enc = loaded.tokenizer(texts, truncation=True, return_tensors="np", **kwargs)
    return {name: enc[name].astype(np.int64) for name in loaded.input_names}


def text_parity_cases(spec: ModelSpec, loaded: LoadedTextModel, texts: list[str]) -> list[ParityCase]:
    """Real held-out sentences at the spec's min / opt / max shapes, then the whole eval set."""
    batch, seq = spec.shapes.batch, spec.shapes.sequence

    def take(n: int) -> list[str]:
        return [texts[i % len(texts)] for i in range(n)]

    cases = [
        ParityCase(
            f"min: batch {batch.min}, natural length", _encode(loaded, take(batch.min), max_length=seq.max)
        ),
        ParityCase(
            f"opt: batch {batch.opt} x sequence {seq.opt}",
            _encode(loaded, take(batch.opt), padding="max_length", max_length=seq.opt),
        ),
        ParityCase(
            f"max: batch {batch.max} x sequence {seq.max}",
            _encode(loaded, take(batch.max), padding="max_length", max_length=seq.max),
        ),
    ]
    for start in range(0, len(texts), batch.max):
        chunk = texts[start : start + batch.max]
        cases.append(
            ParityCase(
                f"eval[{start}:{start + len(chunk)}]",
                _encode(loaded, chunk, padding="longest", max_length=seq.max),
            )
        )
    return cases


def export_model(spec: ModelSpec, workdir: Path, force: bool = False) -> ExportResult:
    """Export the spec's model to ONNX and prove parity; record it in the manifest."""
    import torch

    task: ExportTask = get_task(spec.task)
    workdir = Path(workdir)
    target = workdir / ONNX_DIR
    check_overwrite(target / ONNX_FILE, force)
    manifest = Manifest.load(workdir, spec.name)
    checkpoint = checkpoint_path(spec, manifest)
    loaded = load_text_model(checkpoint, task, allow_pickle=spec.source.allow_pickle)
    eval_data = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, None)
    cases = text_parity_cases(spec, loaded, eval_data.texts)
    axes = {name: task.input_axes for name in loaded.input_names} | task.output_axes
    masks = {c.name: c.feeds["attention_mask"] for c in cases if "attention_mask" in c.feeds}

    rejected = workdir / f"{ONNX_DIR}-rejected"
    with atomic_path(target, force=True) as tmp:
        tmp.mkdir()
        onnx_path = tmp / ONNX_FILE
        example = {name: torch.from_numpy(v) for name, v in cases[1].feeds.items()}
        outcome = export_module(
            loaded.module,
            example,
            onnx_path,
            list(task.output_names),
            axes,
            opset=spec.export.opset,
            exporter=spec.export.exporter,
            fallback=spec.export.fallback,
        )
        check_dynamic_dims(
            onnx_path, {n: task.input_axes for n in loaded.input_names}, cases[0].feeds, cases[2].feeds
        )
        report = compare(
            loaded.module,
            onnx_path,
            cases,
            list(task.output_names),
            task.agreement,
            spec.export.tolerances,
            outcome.exporter,
            masks=masks,
        )
        report.notes.extend(f"exporter failed first: {attempt}" for attempt in outcome.attempts)
        report.onnx = str(target / ONNX_FILE)
        if not report.passed:
            rejected.mkdir(parents=True, exist_ok=True)
            dump_json(rejected / "verification.json", report)
            (rejected / "verification.md").write_text(report.markdown(), encoding="utf-8")
            raise ParityError(
                f"ONNX export of '{spec.name}' failed parity: {'; '.join(report.failures)} "
                f"(report: {rejected / 'verification.md'}; nothing was written to {target})"
            )
        dump_json(tmp / "verification.json", report)
        (tmp / "verification.md").write_text(report.markdown(), encoding="utf-8")
    shutil.rmtree(rejected, ignore_errors=True)

    onnx_file = (target / ONNX_FILE).resolve()
    manifest.record(
        StageRecord(
            stage="export",
            artifacts={
                "onnx": onnx_file,
                "report": (target / "verification.json").resolve(),
                "report_markdown": (target / "verification.md").resolve(),
                "checkpoint": checkpoint.resolve(),
            },
            metrics={
                "max_abs": max(o.max_abs for o in report.outputs),
                **({"label_agreement": report.label_agreement} if report.label_agreement is not None else {}),
                **({"min_cosine": report.min_cosine} if report.min_cosine is not None else {}),
            },
            details={
                "task": spec.task,
                "exporter": outcome.exporter,
                "opset": spec.export.opset,
                "input_names": loaded.input_names,
                "output_names": list(task.output_names),
                "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in axes.items()},
                "graph_inputs": graph_dims(onnx_file),
                "labels": loaded.labels,
            },
        )
    )
    manifest.save(workdir)
    return ExportResult(onnx=onnx_file, report=report, report_path=(target / "verification.json").resolve())
