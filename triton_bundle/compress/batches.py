"""Texts -> tokenized torch batches, and the teacher's outputs on them kept per example."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

TEXT_INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")


def input_names(tokenizer, model) -> list[str]:
    """The text inputs both the tokenizer produces and the model's forward takes (export's rule)."""
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    wanted = set(getattr(tokenizer, "model_input_names", TEXT_INPUT_ORDER))
    return [name for name in TEXT_INPUT_ORDER if name in accepted and name in wanted]


@dataclass(frozen=True)
class Batch:
    enc: dict[str, torch.Tensor]
    gold: torch.Tensor  # class ids, -1 where there is no gold label
    rows: list[int]  # example indices, to fetch per-example teacher targets

    @property
    def mask(self) -> torch.Tensor:
        return self.enc["attention_mask"]


def encode(
    tokenizer,
    texts: Sequence[str],
    gold: Sequence[int],
    rows: Sequence[int],
    names: Sequence[str],
    max_length: int,
) -> Batch:
    enc = tokenizer(
        [texts[i] for i in rows],
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return Batch(
        enc={name: enc[name] for name in names},
        gold=torch.tensor([gold[i] for i in rows], dtype=torch.long),
        rows=list(rows),
    )


def in_order(
    tokenizer, texts: Sequence[str], gold: Sequence[int], names: Sequence[str], max_length: int, size: int
) -> list[Batch]:
    """Fixed batches in data order (importance, teacher targets)."""
    return [
        encode(tokenizer, texts, gold, range(start, min(start + size, len(texts))), names, max_length)
        for start in range(0, len(texts), size)
    ]


def stack_targets(targets: Sequence[torch.Tensor], rows: Sequence[int], length: int) -> torch.Tensor:
    """Per-example teacher outputs for a batch; token logits are zero-padded to the batch length."""
    picked = [targets[i] for i in rows]
    if picked[0].dim() == 1:
        return torch.stack(picked)
    out = picked[0].new_zeros((len(picked), length, picked[0].shape[-1]))
    for row, t in enumerate(picked):
        out[row, : t.shape[0]] = t[:length]
    return out


@torch.no_grad()
def teacher_targets(objective, teacher, batches: Sequence[Batch], total: int) -> list[torch.Tensor]:
    """The teacher's output per example (token logits trimmed to the example's real length)."""
    targets: list[torch.Tensor | None] = [None] * total
    teacher.eval()
    for batch in batches:
        out, _ = objective.outputs(teacher, batch.enc)
        lengths = batch.mask.sum(1).tolist()
        for row, index in enumerate(batch.rows):
            targets[index] = out[row, : lengths[row]].clone() if out.dim() == 3 else out[row].clone()
    return [t for t in targets if t is not None]
