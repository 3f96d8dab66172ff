"""Knowledge distillation: train the pruned student on the teacher's outputs (and gold labels).

Teacher outputs are computed once per text; the student then learns them for a few epochs with
AdamW and a linearly decaying learning rate. Optional hidden-state matching (each kept layer's
output vs the teacher layer it came from) runs the teacher alongside. Seeded and deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from triton_bundle.compress.batches import Batch, encode, in_order, stack_targets, teacher_targets
from triton_bundle.compress.corpus import Corpus
from triton_bundle.compress.objectives import Objective
from triton_bundle.spec import DistillSpec

Advance = Callable[[int, str], None]
HIDDEN_PROBE_BATCHES = 4  # batches of 64 texts the hidden-state distance is reported on


class DistillStats(BaseModel):
    examples: int
    labelled: int
    extra: int
    augmented: int
    epochs: int
    steps: int
    seconds: float
    soft_loss_before: float  # distance to the teacher on the distillation texts, before training
    soft_loss_after: float
    final_loss: float  # training loss, mean of the last steps
    hidden_matching: bool
    # hidden-state distance to the teacher layers the student's came from (hidden matching only)
    hidden_loss_before: float | None = None
    hidden_loss_after: float | None = None


def steps_for(corpus: Corpus, cfg: DistillSpec) -> int:
    return cfg.epochs * ((len(corpus) + cfg.batch_size - 1) // cfg.batch_size)


def _hidden_loss(
    student_states, teacher_states, layer_map: Sequence[int], mask: torch.Tensor
) -> torch.Tensor:
    """MSE between each student layer's output and the teacher layer it was copied from (real tokens)."""
    m = mask.unsqueeze(-1).to(student_states[0].dtype)
    losses = [
        F.mse_loss(student_states[j + 1] * m, teacher_states[t + 1] * m, reduction="sum") / (m.sum() + 1e-9)
        for j, t in enumerate(layer_map)
    ]
    return torch.stack(losses).mean() / student_states[0].shape[-1]


def _step_loss(
    objective, student, teacher, batch: Batch, targets, cfg: DistillSpec, layer_map
) -> torch.Tensor:
    hidden = cfg.hidden_weight > 0
    out, states = objective.outputs(student, batch.enc, hidden=hidden)
    target = stack_targets(targets, batch.rows, batch.mask.shape[1])
    soft = objective.soft_loss(out, target, batch.mask, cfg.temperature)
    gold = objective.gold_loss(out, batch.gold)
    loss = soft if gold is None else cfg.alpha * soft + (1 - cfg.alpha) * gold
    if hidden:
        with torch.no_grad():
            _, teacher_states = objective.outputs(teacher, batch.enc, hidden=True)
        loss = loss + cfg.hidden_weight * _hidden_loss(states, teacher_states, layer_map, batch.mask)
    return loss


@torch.no_grad()
def hidden_distance(objective, student, teacher, batches: Sequence[Batch], layer_map) -> float:
    """Mean per-layer hidden-state distance of `student` to the teacher (what hidden matching lowers)."""
    student.eval()
    total = 0.0
    for batch in batches:
        _, states = objective.outputs(student, batch.enc, hidden=True)
        _, teacher_states = objective.outputs(teacher, batch.enc, hidden=True)
        total += float(_hidden_loss(states, teacher_states, layer_map, batch.mask)) * len(batch.rows)
    return total / sum(len(b.rows) for b in batches)


@torch.no_grad()
def _soft_loss(
    objective: Objective, student: nn.Module, batches: Sequence[Batch], targets, temperature
) -> float:
    student.eval()
    total = 0.0
    for batch in batches:
        out, _ = objective.outputs(student, batch.enc)
        target = stack_targets(targets, batch.rows, batch.mask.shape[1])
        total += float(objective.soft_loss(out, target, batch.mask, temperature)) * len(batch.rows)
    return total / sum(len(b.rows) for b in batches)


def distill(
    objective: Objective,
    teacher: nn.Module,
    student: nn.Module,
    tokenizer,
    names: Sequence[str],
    corpus: Corpus,
    cfg: DistillSpec,
    layer_map: Sequence[int],
    advance: Advance,
) -> DistillStats:
    """Train `student` in place on `corpus`; returns what happened."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    fixed = in_order(tokenizer, corpus.texts, corpus.gold, names, cfg.max_length, 64)
    targets = teacher_targets(objective, teacher, fixed, len(corpus))
    embeddings = student.get_input_embeddings().weight
    embeddings.requires_grad_(False)  # a third of MiniLM's weights; frozen, steps are ~2x faster
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    total = steps_for(corpus, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    before = _soft_loss(objective, student, fixed, targets, cfg.temperature)
    probe = fixed[:HIDDEN_PROBE_BATCHES] if cfg.hidden_weight > 0 else []
    hidden_before = hidden_distance(objective, student, teacher, probe, layer_map) if probe else None
    started, losses = time.perf_counter(), []
    student.train()
    for _epoch in range(cfg.epochs):
        order = torch.randperm(len(corpus), generator=generator).tolist()
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start : start + cfg.batch_size]
            batch = encode(tokenizer, corpus.texts, corpus.gold, rows, names, cfg.max_length)
            loss = _step_loss(objective, student, teacher, batch, targets, cfg, layer_map)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
            advance(1, f"loss {losses[-1]:.4f}")
    seconds = time.perf_counter() - started
    embeddings.requires_grad_(True)
    after = _soft_loss(objective, student, fixed, targets, cfg.temperature)
    hidden_after = hidden_distance(objective, student, teacher, probe, layer_map) if probe else None
    return DistillStats(
        examples=len(corpus),
        labelled=corpus.labelled,
        extra=corpus.extra,
        augmented=corpus.augmented,
        epochs=cfg.epochs,
        steps=len(losses),
        seconds=seconds,
        soft_loss_before=before,
        soft_loss_after=after,
        final_loss=sum(losses[-10:]) / len(losses[-10:]),
        hidden_matching=cfg.hidden_weight > 0,
        hidden_loss_before=hidden_before,
        hidden_loss_after=hidden_after,
    )
