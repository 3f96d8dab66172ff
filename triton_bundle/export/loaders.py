"""Load a Hugging Face checkpoint for export: safetensors only unless pickles are explicitly allowed."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from triton_bundle.export.errors import CheckpointError, UnsupportedTaskError
from triton_bundle.export.tasks import ExportTask
from triton_bundle.hf import quiet_offline

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
TEXT_INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class LoadedTextModel:
    module: nn.Module  # wrapped for export: forward(*inputs) -> tensor(s) in the task's output order
    tokenizer: object
    input_names: list[str]
    labels: list[str] | None
    checkpoint: Path


def check_checkpoint(path: Path, allow_pickle: bool) -> None:
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json (expected a Hugging Face checkpoint directory)")
    if not any((path / name).is_file() for name in SAFE_WEIGHTS):
        pickled = [name for name in PICKLED_WEIGHTS if (path / name).is_file()]
        if pickled and not allow_pickle:
            raise CheckpointError(
                f"{path} has only pickled weights ({pickled[0]}); convert them to safetensors, or set "
                "source.allow_pickle: true if you trust this checkpoint"
            )
        if not pickled:
            raise CheckpointError(f"{path} has no weights (expected model.safetensors)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(f"{path} has no tokenizer files (expected tokenizer.json or a vocabulary file)")


def labels_of(config) -> list[str] | None:
    id2label = getattr(config, "id2label", None) or {}
    if not id2label:
        return None
    return [id2label[i] for i in sorted(id2label)]


def load_text_model(path: Path, task: ExportTask, allow_pickle: bool = False) -> LoadedTextModel:
    import transformers

    quiet_offline()
    path = Path(path)
    check_checkpoint(path, allow_pickle)
    auto = getattr(transformers, task.auto_class)
    config = transformers.AutoConfig.from_pretrained(path)
    try:
        model = auto.from_pretrained(path, use_safetensors=not allow_pickle or None)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            arch = json.loads((path / "config.json").read_text()).get("model_type", "?")
            raise UnsupportedTaskError(
                f"model type '{arch}' at {path} does not support task '{task.name}' ({task.auto_class})"
            ) from None
        raise
    model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    accepted = set(inspect.signature(model.forward).parameters)
    wanted = set(getattr(tokenizer, "model_input_names", TEXT_INPUT_ORDER))
    input_names = [name for name in TEXT_INPUT_ORDER if name in accepted and name in wanted]
    return LoadedTextModel(
        module=task.wrap(model).eval(),
        tokenizer=tokenizer,
        input_names=input_names,
        labels=labels_of(config),
        checkpoint=path,
    )
