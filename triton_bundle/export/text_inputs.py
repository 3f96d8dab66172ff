"""Text modality: a Hugging Face checkpoint + its tokenizer over the spec's held-out sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from triton_bundle.data import load_texts
from triton_bundle.export.loaders import LoadedTextModel, load_text_model
from triton_bundle.export.prepared import ParityCase, PreparedExport, chunks, cycle
from triton_bundle.export.tasks import ExportTask
from triton_bundle.spec import ModelSpec


def _encode(loaded: LoadedTextModel, texts: list[str], **kwargs) -> dict[str, np.ndarray]:
    enc = loaded.tokenizer(texts, truncation=True, return_tensors="np", **kwargs)
    return {name: enc[name].astype(np.int64) for name in loaded.input_names}


def text_parity_cases(spec: ModelSpec, loaded: LoadedTextModel, texts: list[str]) -> list[ParityCase]:
    """Real held-out sentences at the spec's min / opt / max shapes, then the whole eval set."""
    batch, seq = spec.shapes.batch, spec.shapes.sequence
    cases = [
        ParityCase(
            f"min: batch {batch.min}, natural length",
            _encode(loaded, cycle(texts, batch.min), max_length=seq.max),
        ),
        ParityCase(
            f"opt: batch {batch.opt} x sequence {seq.opt}",
            _encode(loaded, cycle(texts, batch.opt), padding="max_length", max_length=seq.opt),
        ),
        ParityCase(
            f"max: batch {batch.max} x sequence {seq.max}",
            _encode(loaded, cycle(texts, batch.max), padding="max_length", max_length=seq.max),
        ),
    ]
    for start, end in chunks(len(texts), batch.max):
        cases.append(
            ParityCase(
                f"eval[{start}:{end}]",
                _encode(loaded, texts[start:end], padding="longest", max_length=seq.max),
            )
        )
    return cases


def prepare_text(spec: ModelSpec, task: ExportTask, source: Path) -> PreparedExport:
    loaded = load_text_model(source, task, allow_pickle=spec.source.allow_pickle, export=spec.export)
    texts = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, None).texts
    cases = text_parity_cases(spec, loaded, texts)
    masks = {c.name: c.feeds["attention_mask"] for c in cases if "attention_mask" in c.feeds}
    details = {"tokenizer": type(loaded.tokenizer).__name__, "max_length": spec.shapes.sequence.max}
    if task.name == "feature-extraction":
        details |= {"pooling": spec.export.pooling, "normalize": spec.export.normalize}
    return PreparedExport(
        module=loaded.module,
        input_axes={name: dict(task.input_axes) for name in loaded.input_names},
        output_axes={name: dict(task.output_axes.get(name, {})) for name in task.output_names},
        cases=cases,
        source=loaded.checkpoint,
        labels=loaded.labels,
        masks=masks,
        details=details,
    )
