"""The compress stage: teacher -> importance -> pruned students -> distillation -> gate -> report.

A passing student is published at `<workdir>/compress/student/` (safetensors, config, tokenizer)
with `report.json`, `report.md` and `speed_vs_agreement.png` beside it, and recorded in the
manifest; export then serves it. When no candidate passes, only the report lands, under
`<workdir>/compress-rejected/`, and the teacher stays the served checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.checkpoints import teacher_checkpoint, weights_digest
from triton_bundle.compress import importance as imp
from triton_bundle.compress import measure
from triton_bundle.compress.batches import in_order, input_names
from triton_bundle.compress.corpus import Corpus, build_corpus, gold_ids, training_texts
from triton_bundle.compress.distill import distill, steps_for
from triton_bundle.compress.gate import HeldOut, gold_for, wrapped_outputs
from triton_bundle.compress.objectives import Objective, objective_for
from triton_bundle.compress.prune import StudentShape, build_student, save_student, verify_reload
from triton_bundle.compress.record import CompressDetails, CompressRecord
from triton_bundle.compress.report import CompressReport, ModelRow, plot
from triton_bundle.compress.targets import candidate_counts
from triton_bundle.data import load_texts
from triton_bundle.export.loaders import labels_of, load_hf_model
from triton_bundle.export.tasks import ExportTask, get_task
from triton_bundle.manifest import Manifest, dump_json
from triton_bundle.precision.evaluate import EvalSet
from triton_bundle.precision.text_inputs import encode_batches
from triton_bundle.progress import progress_bar
from triton_bundle.spec import CompressSpec, ModelSpec

COMPRESS_DIR = "compress"
REJECTED_DIR = f"{COMPRESS_DIR}-rejected"
STUDENT_DIR = "student"
PLOT_NAME = "speed_vs_agreement.png"


@dataclass(frozen=True)
class CompressResult:
    report: CompressReport
    passed: bool
    student: Path | None  # the published checkpoint
    directory: Path  # compress/ when passed, compress-rejected/ otherwise


@dataclass
class _Run:
    """Everything loaded once and shared by every candidate."""

    spec: ModelSpec
    cfg: CompressSpec
    task: ExportTask
    objective: Objective
    teacher_dir: Path
    teacher: nn.Module
    tokenizer: object
    names: list[str]
    labels: list[str] | None
    located: object
    heldout: HeldOut
    corpus: Corpus
    scratch: Path

    def wrap(self, model: nn.Module) -> nn.Module:
        return self.task.wrap(model, self.spec.export).eval()


def _load(spec: ModelSpec, manifest: Manifest, scratch: Path, search: bool) -> tuple[_Run, list[int], int]:
    """Teacher, data and the student sizes to try; every bad-input check runs here, before any work."""
    from transformers import AutoTokenizer

    from triton_bundle.compress.structure import locate

    cfg = (spec.compress or CompressSpec()).model_copy(deep=True)
    # Texts longer than the served sequence range are truncated in service too: train as served.
    cfg.distill.max_length = min(cfg.distill.max_length, spec.shapes.sequence.max)
    objective = objective_for(spec.task, spec.export.pooling)
    task = get_task(spec.task)
    teacher_dir = teacher_checkpoint(spec, manifest).resolve()
    teacher, config = load_hf_model(teacher_dir, task, spec.source.allow_pickle)
    located = locate(teacher)
    counts, ffn = candidate_counts(cfg, located, search)
    labels = spec.labels or labels_of(config)
    corpus = build_corpus(spec, labels if objective.kind == "logits" else None)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    names = input_names(tokenizer, teacher)
    heldout = _heldout(spec, task, teacher, tokenizer, names, labels)
    run = _Run(
        spec, cfg, task, objective, teacher_dir, teacher, tokenizer, names, labels, located, heldout, corpus, scratch
    )  # fmt: skip
    return run, counts, ffn


def _heldout(spec, task, teacher, tokenizer, names, labels) -> HeldOut:
    path = spec.resolve(spec.data.eval)
    data = load_texts(path, spec.data.text_field, spec.data.label_field)
    batches = encode_batches(tokenizer, data.texts, names, 32, spec.shapes.sequence.max)
    gold = gold_for(spec.task, list(data.labels), labels, str(path))
    eval_set = EvalSet(batches, gold, labels, task.agreement, output_names=list(task.output_names))
    reference = wrapped_outputs(task.wrap(teacher, spec.export), batches)
    return HeldOut(eval_set=eval_set, reference=reference)


def _importance(run: _Run) -> imp.Importance:
    train = training_texts(run.spec)
    count = min(run.cfg.importance_samples, len(train))
    gold = gold_ids(list(train.labels[:count]), run.labels if run.objective.kind == "logits" else None)
    batches = in_order(run.tokenizer, train.texts[:count], gold, run.names, run.cfg.distill.max_length, 16)
    with progress_bar("importance", imp.steps(run.located, len(batches))) as advance:
        return imp.measure(run.teacher, run.located, run.objective, batches, advance)


def _candidate(run: _Run, importance: imp.Importance, shape: StudentShape) -> tuple[ModelRow, nn.Module]:
    name = f"student-{len(shape.layers)}L" + ("" if shape.ffn == run.located.ffn else f"-ffn{shape.ffn}")
    student = build_student(run.teacher, run.located, importance, shape)
    total = steps_for(run.corpus, run.cfg.distill)
    with progress_bar(f"distilling {name}", total) as advance:
        stats = distill(
            run.objective,
            run.teacher,
            student,
            run.tokenizer,
            run.names,
            run.corpus,
            run.cfg.distill,
            shape.layers,
            advance,
        )
    metrics, gate = run.heldout.judge(run.wrap(student), run.spec.precision.budget)
    size = measure.Size(
        layers=len(shape.layers),
        ffn=shape.ffn,
        params=measure.param_count(student),
        flops_per_sequence=0,
        size_mb=0,
    )
    row = ModelRow(
        name=name, kept_layers=list(shape.layers), size=size, metrics=metrics, gate=gate, distill=stats
    )
    return row, student


def _measure(run: _Run, rows: list[ModelRow], models: list[nn.Module]) -> float:
    """Fill in FLOPs, size on disk and onnxruntime speed for every row; the mean token count."""
    eval_texts = load_texts(run.spec.resolve(run.spec.data.eval), run.spec.data.text_field, None).texts
    mix = measure.length_mix(run.tokenizer, eval_texts, run.names, run.spec.shapes.sequence.max)
    length = measure.mean_length(mix)
    hidden = run.located.heads * run.located.head_size
    output = run.task.output_names[0]
    paths: dict[str, Path] = {}
    for row, model in zip(rows, models, strict=True):
        saved = run.teacher_dir if model is run.teacher else run.scratch / row.name
        if not saved.exists():
            save_student(model, run.tokenizer, run.teacher_dir, saved)
        row.size.size_mb = measure.size_mb(saved)
        row.size.flops_per_sequence = measure.flops_per_sequence(
            row.size.layers, hidden, row.size.ffn, length
        )
        paths[row.name] = measure.export_onnx(
            run.wrap(model),
            mix[8][0],
            run.scratch / f"{row.name}.onnx",
            output,
            run.task.output_axes.get(output, {0: "batch"}),
        )
    speeds = measure.throughput(paths, mix, run.cfg.latency_rounds, run.cfg.threads)
    for row in rows:
        row.speed = speeds[row.name]
    return length


def _publish(report: CompressReport, student: nn.Module | None, run: _Run, workdir: Path) -> Path:
    """compress/ (student + report) when a student passed, else compress-rejected/ (report only)."""
    passed = student is not None
    target = workdir / (COMPRESS_DIR if passed else REJECTED_DIR)
    with atomic_path(target, force=True) as tmp:
        tmp.mkdir()
        if student is not None:
            shutil.copytree(run.scratch / (report.selected or ""), tmp / STUDENT_DIR)
            inputs = run.heldout.eval_set.batches[0]
            enc = {k: torch.from_numpy(v) for k, v in inputs.items()}
            verify_reload(student, run.task.auto_class or "AutoModel", tmp / STUDENT_DIR, enc)
        dump_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(report.markdown(), encoding="utf-8")
        plot(report, tmp / PLOT_NAME)
    shutil.rmtree(workdir / (REJECTED_DIR if passed else COMPRESS_DIR), ignore_errors=True)
    return target


def _record(manifest: Manifest, report: CompressReport, run: _Run, directory: Path, passed: bool) -> None:
    artifacts = {"report": directory / "report.json", "plot": directory / PLOT_NAME}
    if passed:
        artifacts["checkpoint"] = directory / STUDENT_DIR
    metrics: dict[str, float] = {}
    for row in [report.teacher, *report.candidates]:
        prefix = "teacher" if row is report.teacher else row.name
        metrics[f"{prefix}.params"] = float(row.size.params)
        metrics[f"{prefix}.size_mb"] = row.size.size_mb
        for speed in row.speed:
            metrics[f"{prefix}.sequences_per_s.batch{speed.batch}"] = speed.sequences_per_s
            metrics[f"{prefix}.ms.batch{speed.batch}"] = speed.ms_per_batch
        if row.gate is not None:
            metrics[f"{prefix}.{row.gate.metric}"] = row.gate.value
            metrics[f"{prefix}.speedup.batch8"] = report.speedup(row) or 0.0
    manifest.record(
        CompressRecord(
            artifacts={k: v.resolve() for k, v in artifacts.items()},
            metrics=metrics,
            details=CompressDetails(
                teacher=str(run.teacher_dir),
                teacher_sha256=weights_digest(run.teacher_dir),
                selected=report.selected,
                candidates=[c.name for c in report.candidates],
                kept_layers=next(
                    (c.kept_layers for c in report.candidates if c.name == report.selected), None
                ),
                search=report.search,
            ),
            passed=passed,
        )
    )


def compress(spec: ModelSpec, workdir: Path, force: bool = False, search: bool = False) -> CompressResult:
    """Prune and distill the teacher into the smallest student (of those tried) that passes the gate."""
    from triton_bundle.hf import quiet_offline

    quiet_offline()
    workdir = Path(workdir)
    check_overwrite(workdir / COMPRESS_DIR, force)
    manifest = Manifest.load(workdir, spec.name)
    workdir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads((spec.compress.threads if spec.compress else None) or threads)
    try:
        with tempfile.TemporaryDirectory(prefix=".compress-", dir=workdir) as scratch:
            run, counts, ffn = _load(spec, manifest, Path(scratch), search)
            report, student = _search(run, counts, ffn, search)
            directory = _publish(report, student, run, workdir)
    finally:
        torch.set_num_threads(threads)  # the setting is process-wide: leave it as found
    passed = student is not None
    _record(manifest, report, run, directory, passed)
    manifest.save(workdir)
    return CompressResult(
        report=report, passed=passed, student=directory / STUDENT_DIR if passed else None, directory=directory
    )


def _search(run: _Run, counts: list[int], ffn: int, search: bool) -> tuple[CompressReport, nn.Module | None]:
    """Distill and gate each student size in turn (with --search: until one passes); measure them all."""
    importance = _importance(run)
    rows, models, chosen = [], [], None
    for count in counts:
        shape = StudentShape(layers=tuple(importance.report.keep(count)), ffn=ffn)
        row, student = _candidate(run, importance, shape)
        rows.append(row)
        models.append(student)
        if row.passed and chosen is None:
            chosen = (row, student)
            if search:
                break
    teacher_row = _teacher_row(run)
    length = _measure(run, [teacher_row, *rows], [run.teacher, *models])
    report = CompressReport(
        model=run.spec.name,
        task=run.spec.task,
        teacher_checkpoint=str(run.teacher_dir),
        family_layout=run.located.layout.name,
        mean_tokens=length,
        eval_examples=run.heldout.eval_set.examples,
        teacher=teacher_row,
        candidates=rows,
        selected=chosen[0].name if chosen else None,
        importance=importance.report,
        search=search,
        notes=_notes(run),
    )
    return report, chosen[1] if chosen else None


def _teacher_row(run: _Run) -> ModelRow:
    size = measure.Size(
        layers=run.located.layers,
        ffn=run.located.ffn,
        params=measure.param_count(run.teacher),
        flops_per_sequence=0,
        size_mb=0,
    )
    return ModelRow(name="teacher", kept_layers=list(range(run.located.layers)), size=size)


def _notes(run: _Run) -> list[str]:
    notes = [
        f"attention heads are ranked, not removed: transformers 5.x has no prune_heads and "
        f"{run.located.heads} heads x {run.located.head_size} dims is fixed by hidden_size / num_attention_heads",
        f"distilled on {len(run.corpus)} texts ({run.corpus.labelled} with gold labels, {run.corpus.extra} "
        f"extra, {run.corpus.augmented} augmented); the held-out data is never trained on",
        "speed: onnxruntime CPU, in process, best of interleaved rounds; the gate uses the spec's precision.budget",
    ]
    if run.objective.kind == "token-logits":
        notes.append("token classification: soft targets only (per-token gold labels are not read)")
    return notes
