"""How much each layer, attention head and FFN neuron matters, measured on real texts.

Heads and neurons: the gradient of the task loss w.r.t. a mask of ones on each head's output
(and each FFN neuron's activation), summed in absolute value over batches and normalised per layer
(Michel et al. 2019, "Are Sixteen Heads Really Better than One?"). Layers: greedy removal, each step
dropping the layer whose absence moves the outputs least from the teacher's (KL or 1 - cosine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from pydantic import BaseModel
from torch import nn

from triton_bundle.compress.batches import Batch
from triton_bundle.compress.objectives import Objective
from triton_bundle.compress.structure import Located

Advance = Callable[[int, str], None]


class LayerScore(BaseModel):
    layer: int
    skip_distortion: float  # output distortion when only this layer is skipped
    heads: list[float]  # per-head importance, normalised within the layer
    ffn_mean: float  # mean FFN-neuron importance (raw)


class ImportanceReport(BaseModel):
    samples: int
    method: str
    layers: list[LayerScore]
    removal_order: list[int]  # greedy: removed first = least important
    removal_distortion: list[float]  # output distortion after each greedy removal
    top_heads: list[tuple[int, int, float]]  # (layer, head, score), most important first
    bottom_heads: list[tuple[int, int, float]]

    def keep(self, layers: int) -> list[int]:
        """The `layers` most important layers, in model order."""
        total = len(self.layers)
        removed = set(self.removal_order[: total - layers])
        return [i for i in range(total) if i not in removed]


@dataclass
class Importance:
    report: ImportanceReport
    ffn_scores: list[torch.Tensor]  # per layer, per neuron


def _masks(model: nn.Module, located: Located) -> tuple[list[torch.Tensor], list[torch.Tensor], list]:
    """Masks of ones multiplied into each head's output and each FFN activation via pre-hooks."""
    heads = [torch.ones(located.heads, requires_grad=True) for _ in range(located.layers)]
    ffn = [torch.ones(located.ffn, requires_grad=True) for _ in range(located.layers)]
    handles = []
    for i, block in enumerate(located.blocks(model)):

        def scale_heads(_module, args, i=i):
            return (args[0] * heads[i].repeat_interleave(located.head_size), *args[1:])

        def scale_ffn(_module, args, i=i):
            return (args[0] * ffn[i], *args[1:])

        handles.append(located.linear(block, "attn_out").register_forward_pre_hook(scale_heads))
        handles.append(located.linear(block, "ffn_out").register_forward_pre_hook(scale_ffn))
    return heads, ffn, handles


def _gradient_scores(
    model: nn.Module, located: Located, objective: Objective, batches: Sequence[Batch], advance: Advance
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    heads, ffn, handles = _masks(model, located)
    head_total = [torch.zeros(located.heads) for _ in heads]
    ffn_total = [torch.zeros(located.ffn) for _ in ffn]
    try:
        for batch in batches:
            out, _ = objective.outputs(model, batch.enc)
            loss = objective.importance_loss(out, batch.gold, batch.mask)
            grads = torch.autograd.grad(loss, heads + ffn)
            for i in range(located.layers):
                head_total[i] += grads[i].abs()
                ffn_total[i] += grads[located.layers + i].abs()
            advance(1, "gradients")
    finally:
        for handle in handles:
            handle.remove()
    return head_total, ffn_total


@torch.no_grad()
def _distortion(
    model: nn.Module,
    located: Located,
    keep: Sequence[int],
    objective: Objective,
    batches: Sequence[Batch],
    reference: Sequence[torch.Tensor],
) -> float:
    """Mean output distortion vs the full model with only the `keep` layers run."""
    parent_path, _, attr = located.list_path.rpartition(".")
    parent = model.get_submodule(parent_path)
    full = getattr(parent, attr)
    setattr(parent, attr, nn.ModuleList([full[i] for i in keep]))
    try:
        values = [
            objective.distortion(objective.outputs(model, b.enc)[0], ref, b.mask)
            for b, ref in zip(batches, reference, strict=True)
        ]
    finally:
        setattr(parent, attr, full)
    return float(sum(values) / len(values))


def _greedy_removal(
    model, located, objective, batches, advance
) -> tuple[list[float], list[int], list[float]]:
    with torch.no_grad():
        reference = [objective.outputs(model, b.enc)[0] for b in batches]
    remaining = list(range(located.layers))
    single: list[float] = []
    order: list[int] = []
    after: list[float] = []
    while len(remaining) > 1:
        trials = {
            i: _distortion(model, located, [j for j in remaining if j != i], objective, batches, reference)
            for i in remaining
        }
        if not single:
            single = [trials[i] for i in range(located.layers)]
        drop = min(trials, key=lambda i: (trials[i], i))
        order.append(drop)
        after.append(trials[drop])
        remaining.remove(drop)
        advance(1, f"layer {drop} removed")
    order.extend(remaining)  # the last layer standing is the most important
    return single or [0.0], order, after


def measure(
    model: nn.Module, located: Located, objective: Objective, batches: Sequence[Batch], advance: Advance
) -> Importance:
    """Score heads, FFN neurons and layers of `model` (eval mode, weights untouched)."""
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # only the masks need gradients
    try:
        head_total, ffn_total = _gradient_scores(model, located, objective, batches, advance)
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    single, order, after = _greedy_removal(model, located, objective, batches, advance)
    normalised = [h / (h.norm() + 1e-12) for h in head_total]  # Michel et al.: per-layer L2 norm
    layers = [
        LayerScore(
            layer=i,
            skip_distortion=single[i],
            heads=normalised[i].tolist(),
            ffn_mean=float(ffn_total[i].mean()),
        )
        for i in range(located.layers)
    ]
    ranked = sorted(
        ((i, h, float(normalised[i][h])) for i in range(located.layers) for h in range(located.heads)),
        key=lambda t: -t[2],
    )
    report = ImportanceReport(
        samples=sum(len(b.rows) for b in batches),
        method="heads/FFN: |d loss / d mask| summed over batches (Michel et al. 2019); layers: greedy "
        "removal by output distortion vs the teacher",
        layers=layers,
        removal_order=order,
        removal_distortion=after,
        top_heads=ranked[:8],
        bottom_heads=ranked[-8:][::-1],
    )
    return Importance(report=report, ffn_scores=ffn_total)


def steps(located: Located, batches: int) -> int:
    """Progress units measure() reports: one per gradient batch, one per greedy removal."""
    return batches + located.layers - 1
