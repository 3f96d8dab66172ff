"""The student against the teacher on the held-out data, judged by the spec's precision budget.

The same metrics and gate as a precision variant: label agreement, accuracy drop against gold
labels and macro-F1 for classifiers; cosine to the teacher's vectors for embeddings. Outputs come
from the export stage's task wrapper, i.e. exactly what the exported graph will return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from triton_bundle.labels import GoldLabels, map_gold
from triton_bundle.precision.evaluate import EvalSet, VariantMetrics, compare_outputs, scores_gold_labels
from triton_bundle.precision.gate import GateResult, judge
from triton_bundle.precision.text_inputs import Feeds
from triton_bundle.spec import AccuracyBudget


@torch.no_grad()
def wrapped_outputs(wrapped: nn.Module, batches: Sequence[Feeds]) -> list[list[np.ndarray]]:
    """Per batch, the graph's outputs (one here), as the precision evaluator takes them."""
    wrapped.eval()
    return [[wrapped(*[torch.from_numpy(v) for v in feeds.values()]).float().numpy()] for feeds in batches]


@dataclass(frozen=True)
class HeldOut:
    """The held-out set and the teacher's outputs on it (the gate's reference)."""

    eval_set: EvalSet
    reference: list[list[np.ndarray]]

    def judge(self, wrapped: nn.Module, budget: AccuracyBudget) -> tuple[VariantMetrics, GateResult]:
        metrics = compare_outputs(
            self.reference, wrapped_outputs(wrapped, self.eval_set.batches), self.eval_set
        )
        return metrics, judge(metrics, budget, self.eval_set.agreement)


def gold_for(task: str, gold: Sequence[str | None], names: list[str] | None, where: str) -> GoldLabels | None:
    """Gold labels as the model's names (ids through id2label), as the precision gate reads them."""
    if not names or not scores_gold_labels(task):
        return None
    return map_gold(gold, names, where=where)
