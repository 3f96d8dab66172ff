"""What the student learns per task: the outputs compared, the distillation loss, the importance loss.

Classifiers (sequence and token) match the teacher's logits with KL at a temperature, plus gold
labels where the data has them (sequences only). Embedding models match the teacher's pooled vector
with cosine + MSE. A registry entry per task, like the export stage's task registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from triton_bundle.compress.errors import CompressError

OutputKind = Literal["logits", "token-logits", "embedding"]


@dataclass(frozen=True)
class Objective:
    task: str
    kind: OutputKind
    pooling: str = "mean"  # embeddings: how tokens pool (the export spec's choice)

    def outputs(self, model, enc: dict[str, torch.Tensor], hidden: bool = False):
        """(outputs, hidden states or None): logits, or the pooled un-normalised embedding."""
        out = model(**enc, output_hidden_states=hidden)
        states = out.hidden_states if hidden else None
        if self.kind != "embedding":
            return out.logits, states
        last = out.last_hidden_state
        if self.pooling == "cls":
            return last[:, 0], states
        mask = enc["attention_mask"].unsqueeze(-1).to(last.dtype)
        return (last * mask).sum(1) / mask.sum(1).clamp(min=1e-9), states

    def soft_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        """Distance to the teacher: T^2 * KL(teacher || student) at temperature T, or 1 - cos + MSE."""
        if self.kind == "embedding":
            cosine = F.cosine_similarity(student, teacher, dim=-1).mean()
            return (1 - cosine) + F.mse_loss(student, teacher)
        t = temperature
        log_p = F.log_softmax(student / t, dim=-1)
        q = F.softmax(teacher / t, dim=-1)
        kl = (q * (torch.log(q.clamp(min=1e-12)) - log_p)).sum(-1)
        if self.kind == "token-logits":  # real tokens only
            m = mask.to(kl.dtype)
            return (kl * m).sum() / m.sum().clamp(min=1) * t * t
        return kl.mean() * t * t

    def gold_loss(self, student: torch.Tensor, gold: torch.Tensor) -> torch.Tensor | None:
        """Cross-entropy on the examples with a gold label (-1 marks none); None when no example has one."""
        if self.kind != "logits" or not bool((gold >= 0).any()):
            return None
        return F.cross_entropy(student, gold, ignore_index=-1)

    def importance_loss(self, out: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss whose gradient w.r.t. head / neuron masks ranks them (Michel et al. 2019).

        Classifiers: cross-entropy on gold labels, or on the model's own predictions where there are
        none (a KL to itself would have zero gradient). Embeddings: the pooled vector's energy.
        """
        if self.kind == "embedding":
            return 0.5 * (out**2).sum(-1).mean()
        if self.kind == "token-logits":
            target = out.argmax(-1).masked_fill(mask == 0, -1)
            return F.cross_entropy(out.flatten(0, 1), target.flatten(), ignore_index=-1)
        target = torch.where(gold >= 0, gold, out.argmax(-1))
        return F.cross_entropy(out, target)

    def distortion(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> float:
        """How far outputs moved from the teacher's (KL at T=1, or 1 - cosine): ranks layers."""
        if self.kind == "embedding":
            return float(1 - F.cosine_similarity(student, teacher, dim=-1).mean())
        return float(self.soft_loss(student, teacher, mask, 1.0))


KINDS: dict[str, OutputKind] = {
    "text-classification": "logits",
    "token-classification": "token-logits",
    "feature-extraction": "embedding",
}


def objective_for(task: str, pooling: str = "mean") -> Objective:
    if task not in KINDS:
        raise CompressError(
            f"compress supports tasks {', '.join(KINDS)}; the spec's task is '{task}' (spec field 'task')"
        )
    return Objective(task=task, kind=KINDS[task], pooling=pooling)
