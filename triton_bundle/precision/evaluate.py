"""Run a variant and FP32 with onnxruntime on the held-out data and measure the task's metric.

Classifiers: label agreement with FP32, accuracy and macro-F1 against the gold labels.
Embeddings: cosine similarity to FP32 per example. Generic tensors: PSNR and max |difference|.
Every kind also reports max-abs and PSNR of the raw output, which helps reading a failure; tensor
models report them per output (the gate checks each one).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, Field

from triton_bundle.labels import GoldLabels
from triton_bundle.precision.text_inputs import Feeds, count_rows

Agreement = Literal["labels", "cosine", "tensor"]
Outputs = list[list[np.ndarray]]  # per batch, every graph output in graph order (float32)


def agreement_of(task: str) -> Agreement:
    """How a task's outputs are compared (the export stage's task registry decides)."""
    from triton_bundle.export.tasks import TASKS

    return TASKS[task].agreement if task in TASKS else "tensor"


def scores_gold_labels(task: str) -> bool:
    """Whether the task predicts one label per example, which the data's gold labels can score."""
    from triton_bundle.export.tasks import TASKS

    return task in TASKS and TASKS[task].gold_labels


@dataclass(frozen=True)
class EvalSet:
    """Held-out inputs in batches, with gold labels (None where the data has none)."""

    batches: list[Feeds]
    gold: GoldLabels | None  # mapped onto label_names (None: the model has no label names)
    label_names: list[str] | None  # logits order
    agreement: Agreement
    output_names: list[str] = field(default_factory=list)  # graph order; tensor gates report per name

    @property
    def examples(self) -> int:
        return count_rows(self.batches)


class OutputError(BaseModel):
    """One output of a tensor model against FP32."""

    psnr_db: float
    max_abs: float


class VariantMetrics(BaseModel):
    """A variant's outputs measured against FP32's on the same held-out batches."""

    examples: int
    label_agreement: float | None = None
    accuracy: float | None = None
    accuracy_fp32: float | None = None
    macro_f1: float | None = None
    macro_f1_fp32: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None
    psnr_db: float  # tensor models: the worst output's
    max_abs: float
    outputs: dict[str, OutputError] = Field(
        default_factory=dict, description="tensor models: PSNR / max-abs of each output"
    )


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # QDQ and FP16 graphs log pages of harmless notes
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_outputs(path: Path, batches: Sequence[Feeds]) -> Outputs:
    """Every output of the model for each batch, as float32."""
    sess = session(path)
    return [[np.asarray(o, dtype=np.float32) for o in sess.run(None, dict(feeds))] for feeds in batches]


def _macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    classes = sorted(set(gold) | set(predicted))
    scores = []
    for cls in classes:
        tp = sum(g == cls and p == cls for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != cls and p == cls for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == cls and p != cls for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def _flat(outputs: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([o.reshape(-1) for o in outputs]).astype(np.float64)


def _psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    # Peak is the reference's largest magnitude: the usual choice for signed, unbounded tensors.
    mse = float(np.mean((reference - candidate) ** 2))
    peak = float(np.max(np.abs(reference))) or 1.0
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def _labels_metrics(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], data: EvalSet, masks: list[np.ndarray]
) -> dict[str, float | None]:
    same, total = 0, 0
    ref_pred: list[int] = []
    cand_pred: list[int] = []
    for ref, got, mask in zip(reference, candidate, masks, strict=True):
        agree = ref.argmax(-1) == got.argmax(-1)
        if agree.ndim == 2:  # token classification: real tokens only
            agree = agree[mask.astype(bool)]
        else:
            ref_pred.extend(ref.argmax(-1).tolist())
            cand_pred.extend(got.argmax(-1).tolist())
        same += int(agree.sum())
        total += int(agree.size)
    out: dict[str, float | None] = {"label_agreement": same / total}
    names, gold = data.label_names, data.gold
    if names and ref_pred and gold is not None and gold.complete:
        # Gold labels went through labels.map_gold (ids -> names): compare names with names.
        expected = gold.for_scoring()
        ref_names = [names[i] for i in ref_pred]
        cand_names = [names[i] for i in cand_pred]
        out["accuracy_fp32"] = float(np.mean([g == p for g, p in zip(expected, ref_names, strict=True)]))
        out["accuracy"] = float(np.mean([g == p for g, p in zip(expected, cand_names, strict=True)]))
        out["macro_f1_fp32"] = _macro_f1(expected, ref_names)
        out["macro_f1"] = _macro_f1(expected, cand_names)
    return out


def _cosine_metrics(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict[str, float]:
    a = np.concatenate([r.reshape(r.shape[0], -1) for r in reference]).astype(np.float64)
    b = np.concatenate([c.reshape(c.shape[0], -1) for c in candidate]).astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def _error(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> OutputError:
    ref_flat, cand_flat = _flat(reference), _flat(candidate)
    if not np.isfinite(cand_flat).all():  # an FP16 overflow must fail the gate, not slip through as NaN
        return OutputError(psnr_db=float("-inf"), max_abs=float("inf"))
    return OutputError(
        psnr_db=_psnr(ref_flat, cand_flat), max_abs=float(np.max(np.abs(ref_flat - cand_flat)))
    )


def _per_output(reference: Outputs, candidate: Outputs, names: Sequence[str]) -> dict[str, OutputError]:
    count = len(reference[0]) if reference else 0
    labels = list(names) if len(names) == count else [f"output_{i}" for i in range(count)]
    return {
        label: _error([r[i] for r in reference], [c[i] for c in candidate]) for i, label in enumerate(labels)
    }


def compare_outputs(reference: Outputs, candidate: Outputs, data: EvalSet) -> VariantMetrics:
    """The task metric (plus PSNR / max-abs) of `candidate` against the FP32 `reference`.

    Classifiers and embeddings are judged on their first output; tensor models on every output.
    """
    if data.agreement == "tensor":
        per_output = _per_output(reference, candidate, data.output_names)
        return VariantMetrics(
            examples=data.examples,
            psnr_db=min(e.psnr_db for e in per_output.values()),
            max_abs=max(e.max_abs for e in per_output.values()),
            outputs=per_output,
        )
    reference = [outs[0] for outs in reference]
    candidate = [outs[0] for outs in candidate]
    first = _error(reference, candidate)
    finite = first.max_abs != float("inf")
    values: dict[str, float | None] = {"psnr_db": first.psnr_db, "max_abs": first.max_abs}
    if data.agreement == "labels":
        masks = [b.get("attention_mask", np.ones(1)) for b in data.batches]
        values |= _labels_metrics(reference, candidate, data, masks)
    elif data.agreement == "cosine":
        values |= (
            _cosine_metrics(reference, candidate) if finite else {"mean_cosine": -1.0, "min_cosine": -1.0}
        )
    return VariantMetrics(examples=data.examples, **values)


def measure_latency(
    path: Path, feeds: Feeds, repeats: int = 20, warmup: int = 3, threads: int | None = None
) -> float:
    """Median wall time (ms) of one onnxruntime run on `feeds`; for reports, never for assertions."""
    sess = session(path, threads)
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))
