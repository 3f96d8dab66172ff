"""Load a Hugging Face checkpoint for export: safetensors only unless pickles are explicitly allowed.

Checks run in the order a user fixes them: the directory and its weights, then whether the
architecture supports the task at all, then the files the task's modality needs (tokenizer, image
processor config).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from triton_bundle.export.errors import CheckpointError, UnsupportedTaskError
from triton_bundle.export.tasks import ExportTask, Modality, tasks_for_checkpoint
from triton_bundle.hf import quiet_offline
from triton_bundle.spec import ExportSpec

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
PREPROCESSOR_FILES = ("preprocessor_config.json",)
TEXT_INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")

# What each modality needs beside config + weights: (any of these files, what it is).
MODALITY_FILES: dict[Modality, tuple[tuple[str, ...], str]] = {
    "text": (TOKENIZER_FILES, "tokenizer files (expected tokenizer.json or a vocabulary file)"),
    "vision": (
        PREPROCESSOR_FILES,
        "image processor config (expected preprocessor_config.json: resize, rescale, normalise)",
    ),
}


@dataclass
class LoadedTextModel:
    module: nn.Module  # wrapped for export: forward(*inputs) -> tensor(s) in the task's output order
    tokenizer: object
    input_names: list[str]
    labels: list[str] | None
    checkpoint: Path


def check_model_files(path: Path, allow_pickle: bool) -> None:
    """A directory with config.json and weights (safetensors, or pickles only when allowed)."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json (expected a Hugging Face checkpoint directory)")
    if any((path / name).is_file() for name in SAFE_WEIGHTS):
        return
    pickled = [name for name in PICKLED_WEIGHTS if (path / name).is_file()]
    if pickled and not allow_pickle:
        raise CheckpointError(
            f"{path} has only pickled weights ({pickled[0]}); convert them to safetensors, or set "
            "source.allow_pickle: true if you trust this checkpoint"
        )
    if not pickled:
        raise CheckpointError(f"{path} has no weights (expected model.safetensors)")


def check_modality_files(path: Path, modality: Modality) -> None:
    if modality not in MODALITY_FILES:
        return
    names, what = MODALITY_FILES[modality]
    if not any((path / name).is_file() for name in names):
        raise CheckpointError(f"{path} has no {what}")


def load_config(path: Path, task: ExportTask):
    """The checkpoint's config, after checking the task's auto class accepts its architecture."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    mapping = getattr(transformers, task.auto_class)._model_mapping
    if type(config) not in mapping:
        supported = tasks_for_checkpoint(config)
        raise UnsupportedTaskError(
            f"model type '{config.model_type}' at {path} does not support task '{task.name}' "
            f"({task.auto_class}); expected one of the tasks it supports: {', '.join(supported) or 'none'}"
        )
    return config


def check_checkpoint(path: Path, allow_pickle: bool, task: ExportTask | None = None) -> None:
    """Every check a checkpoint must pass before loading it for `task` (text when not given)."""
    path = Path(path)
    check_model_files(path, allow_pickle)
    if task is not None and task.auto_class:
        quiet_offline()
        load_config(path, task)
    check_modality_files(path, task.modality if task else "text")


def load_hf_model(path: Path, task: ExportTask, allow_pickle: bool = False):
    """The checkpoint's model for `task` in eval mode, and its config; raises the checks' errors."""
    import transformers

    quiet_offline()
    path = Path(path)
    check_model_files(path, allow_pickle)
    config = load_config(path, task)
    check_modality_files(path, task.modality)
    auto = getattr(transformers, task.auto_class)
    model = auto.from_pretrained(path, use_safetensors=None if allow_pickle else True)
    return model.eval(), config


def labels_of(config) -> list[str] | None:
    id2label = getattr(config, "id2label", None) or {}
    if not id2label:
        return None
    return [id2label[i] for i in sorted(id2label)]


def load_text_model(
    path: Path, task: ExportTask, allow_pickle: bool = False, export: ExportSpec | None = None
) -> LoadedTextModel:
    import transformers

    model, config = load_hf_model(path, task, allow_pickle)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    accepted = set(inspect.signature(model.forward).parameters)
    wanted = set(getattr(tokenizer, "model_input_names", TEXT_INPUT_ORDER))
    input_names = [name for name in TEXT_INPUT_ORDER if name in accepted and name in wanted]
    return LoadedTextModel(
        module=task.wrap(model, export or ExportSpec()).eval(),
        tokenizer=tokenizer,
        input_names=input_names,
        labels=labels_of(config),
        checkpoint=Path(path),
    )
