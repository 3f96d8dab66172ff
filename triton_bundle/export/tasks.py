"""Task registry: what each task's exported graph takes and gives. Adding a task is one entry.

Each entry names the transformers auto class that loads the checkpoint, wraps the model so its
forward returns plain tensors in a fixed order, and says how parity is judged for its outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

Agreement = Literal["labels", "cosine", "tensor"]

TEXT_AXES = {0: "batch", 1: "sequence"}


class ClassifierHead(nn.Module):
    """Returns logits only: [batch, labels] or [batch, sequence, labels]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.model(**kwargs).logits


class MeanPooledEmbedding(nn.Module):
    """Sentence embedding: masked mean over tokens, optional L2 normalisation, inside the graph."""

    def __init__(self, model: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.model(**kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled


@dataclass(frozen=True)
class ExportTask:
    name: str
    auto_class: str  # transformers Auto* class that loads a checkpoint for this task
    wrap: Callable[[nn.Module], nn.Module]
    output_names: tuple[str, ...]
    output_axes: dict[str, dict[int, str]]
    agreement: Agreement
    input_axes: dict[int, str] = field(default_factory=lambda: dict(TEXT_AXES))
    modality: Literal["text", "vision", "tensor"] = "text"


TASKS: dict[str, ExportTask] = {
    "text-classification": ExportTask(
        name="text-classification",
        auto_class="AutoModelForSequenceClassification",
        wrap=ClassifierHead,
        output_names=("logits",),
        output_axes={"logits": {0: "batch"}},
        agreement="labels",
    ),
    "token-classification": ExportTask(
        name="token-classification",
        auto_class="AutoModelForTokenClassification",
        wrap=ClassifierHead,
        output_names=("logits",),
        output_axes={"logits": {0: "batch", 1: "sequence"}},
        agreement="labels",
    ),
    "feature-extraction": ExportTask(
        name="feature-extraction",
        auto_class="AutoModel",
        wrap=MeanPooledEmbedding,
        output_names=("embedding",),
        output_axes={"embedding": {0: "batch"}},
        agreement="cosine",
    ),
}


def get_task(name: str) -> ExportTask:
    from triton_bundle.export.errors import UnsupportedTaskError

    if name not in TASKS:
        raise UnsupportedTaskError(f"no exporter for task '{name}' (registered: {', '.join(sorted(TASKS))})")
    return TASKS[name]
