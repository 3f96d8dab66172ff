"""Sensitivity-guided mixed precision: keep the fewest layers in float until the gate passes.

1. Rank layers by how badly their inputs quantize, measured on the evaluation data in one pass:
   the signal-to-quantization-noise ratio (SQNR) of every Q/DQ'd tensor, from onnxruntime's
   qdq_loss_debug tools (lowest SQNR = most sensitive).
2. Find the shortest prefix of that ranking which, kept in float, passes the gate (doubling, then
   bisection: a few quantize-and-evaluate rounds instead of one per layer).
3. Prune: try quantizing each kept layer again, least sensitive first; it stays quantized if the
   gate still passes. A layer that must stay float gets its cost recorded: the gate metric with it
   quantized again.
Every round is one real quantize + evaluate on held-out data, and the rounds are capped by
`max_evaluations`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from triton_bundle.precision.evaluate import VariantMetrics
from triton_bundle.precision.gate import GateResult


@dataclass
class Trial:
    """One quantize-and-evaluate round with a set of layers kept in float."""

    float_layers: frozenset[str]
    gate: GateResult
    metrics: VariantMetrics
    model: Path | None  # the built variant; None when it failed and was deleted


class LayerCost(BaseModel):
    layer: str
    nodes: list[str]
    sqnr_db: float | None  # lowest SQNR of the layer's quantized inputs: the ranking key
    metric_if_quantized: float | None  # the gate metric with this layer quantized again (None: not measured)
    float_weight_mb: float  # FP32 weights this layer keeps (its size cost)


class SearchStep(BaseModel):
    float_layers: int
    metric: float
    passed: bool
    phase: str  # "baseline", "prefix", "prune"


class SensitivityReport(BaseModel):
    """What the search measured and decided."""

    ranking: list[str]  # most sensitive first
    kept_float: list[LayerCost]
    steps: list[SearchStep]
    evaluations: int
    max_evaluations: int
    passed: bool
    note: str = ""


def rank_layers(sqnr_by_layer: Mapping[str, float], layers: Sequence[str]) -> list[str]:
    """Most sensitive first (lowest SQNR); layers without a measurement go last, in graph order."""
    measured = [name for name in layers if name in sqnr_by_layer]
    unmeasured = [name for name in layers if name not in sqnr_by_layer]
    return sorted(measured, key=lambda name: sqnr_by_layer[name]) + unmeasured


class SearchLog:
    """Every trial of one search (memoised by float-layer set), capped at `limit` evaluations."""

    def __init__(self, evaluate: Callable[[frozenset[str]], Trial], limit: int) -> None:
        self.evaluate = evaluate
        self.limit = limit
        self.trials: dict[frozenset[str], Trial] = {}
        self.steps: list[SearchStep] = []
        self.cost_of: dict[str, float] = {}  # layer -> gate metric when it was quantized again

    @property
    def left(self) -> int:
        return self.limit - len(self.trials)

    def run(self, layers: frozenset[str], phase: str) -> Trial | None:
        if layers in self.trials:
            return self.trials[layers]
        if self.left <= 0:
            return None
        trial = self.evaluate(layers)
        self.trials[layers] = trial
        self.steps.append(
            SearchStep(
                float_layers=len(layers), metric=trial.gate.value, passed=trial.gate.passed, phase=phase
            )
        )
        return trial


def search(
    ranking: Sequence[str],
    evaluate: Callable[[frozenset[str]], Trial],
    max_evaluations: int,
    baseline: Trial | None = None,
) -> tuple[Trial | None, SearchLog]:
    """The passing trial with the fewest float layers found within the budget (None if none passed)."""
    budget = SearchLog(evaluate, max_evaluations)
    if baseline is not None:
        budget.trials[baseline.float_layers] = baseline
        budget.steps.append(
            SearchStep(
                float_layers=0, metric=baseline.gate.value, passed=baseline.gate.passed, phase="baseline"
            )
        )
    else:
        baseline = budget.run(frozenset(), "baseline")
    if baseline is not None and baseline.gate.passed:
        return baseline, budget

    # Doubling then bisection over prefix length k: the smallest k whose top-k in float passes.
    # At least one layer stays INT8: every layer in float would be FP32 under another name.
    limit = len(ranking) - 1
    failing, passing, k = 0, None, 1
    while k <= limit:
        trial = budget.run(frozenset(ranking[:k]), "prefix")
        if trial is None:
            break
        if trial.gate.passed:
            passing = k
            break
        failing = k
        k = min(k * 2, limit) if k < limit else limit + 1
    if passing is None:
        return None, budget
    while passing - failing > 1:
        mid = (failing + passing) // 2
        trial = budget.run(frozenset(ranking[:mid]), "prefix")
        if trial is None:
            break
        if trial.gate.passed:
            passing = mid
        else:
            failing = mid
    best = budget.trials[frozenset(ranking[:passing])]

    # Prune: a kept layer goes back to INT8 when the gate still passes without it.
    for layer in reversed(ranking[:passing]):
        if layer not in best.float_layers:
            continue
        trial = budget.run(best.float_layers - {layer}, "prune")
        if trial is None:
            break
        if trial.gate.passed:
            best = trial
        else:
            budget.cost_of[layer] = trial.gate.value
    return best, budget


def costs(
    best: Trial,
    budget: SearchLog,
    layers: Mapping[str, Sequence[str]],
    sqnr_by_layer: Mapping[str, float],
    weight_bytes: Mapping[str, int],
) -> list[LayerCost]:
    """Each kept-float layer with its ranking key, its measured cost, and the FP32 weights it keeps."""
    out = []
    for layer in best.float_layers:
        nodes = list(layers[layer])
        sqnr = sqnr_by_layer.get(layer)
        out.append(
            LayerCost(
                layer=layer,
                nodes=nodes,
                sqnr_db=None if sqnr is None or not math.isfinite(sqnr) else sqnr,
                metric_if_quantized=budget.cost_of.get(layer),
                float_weight_mb=sum(weight_bytes.get(n, 0) for n in nodes) / 1e6,
            )
        )
    return sorted(out, key=lambda c: (c.sqnr_db is None, c.sqnr_db if c.sqnr_db is not None else 0.0))
