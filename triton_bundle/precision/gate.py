"""The accuracy gate: a variant's metrics against the spec's budget, pass or reject.

One primary metric per task kind (label agreement, mean cosine, PSNR) plus the budget's other
limits that apply (accuracy drop against gold labels, macro-F1 drop, max-abs). Tensor models are
checked output by output (`psnr_db[name]`, `max_abs[name]` when there are several); the primary
metric is the worst output's PSNR. A variant passes only when every check does.
"""

from __future__ import annotations

from pydantic import BaseModel

from triton_bundle.precision.evaluate import Agreement, VariantMetrics
from triton_bundle.precision.record import GateCheck
from triton_bundle.spec import AccuracyBudget, OutputBudget


class GateResult(BaseModel):
    """The verdict on one variant: the primary metric, its budget, and every check made."""

    metric: str
    value: float
    budget: float
    passed: bool
    margin: float
    checks: list[GateCheck]

    def failures(self) -> list[str]:
        return [c.describe() for c in self.checks if not c.passed]


def _check(name: str, value: float, limit: float, higher_is_better: bool) -> GateCheck:
    passed = value >= limit if higher_is_better else value <= limit
    return GateCheck(name=name, value=value, limit=limit, higher_is_better=higher_is_better, passed=passed)


def _tensor_checks(metrics: VariantMetrics, budget: AccuracyBudget) -> list[GateCheck]:
    """PSNR and (when a limit is set) max-abs of every output; one output keeps the plain names."""
    checks = []
    single = len(metrics.outputs) == 1
    for name, error in metrics.outputs.items():
        limits = budget.outputs.get(name, OutputBudget())
        suffix = "" if single else f"[{name}]"
        min_psnr = budget.min_psnr_db if limits.min_psnr_db is None else limits.min_psnr_db
        checks.append(_check(f"psnr_db{suffix}", error.psnr_db, min_psnr, True))
        max_abs = budget.max_abs_error if limits.max_abs_error is None else limits.max_abs_error
        if max_abs is not None:
            checks.append(_check(f"max_abs{suffix}", error.max_abs, max_abs, False))
    return checks


def judge(metrics: VariantMetrics, budget: AccuracyBudget, agreement: Agreement) -> GateResult:
    """Compare a variant's metrics (measured against FP32) with the budget."""
    checks: list[GateCheck] = []
    if agreement == "labels":
        checks.append(
            _check("label_agreement", metrics.label_agreement or 0.0, budget.min_label_agreement, True)
        )
        if metrics.accuracy is not None and metrics.accuracy_fp32 is not None:
            drop = metrics.accuracy_fp32 - metrics.accuracy
            checks.append(_check("accuracy_drop", drop, budget.max_accuracy_drop, False))
        if (
            budget.max_f1_drop is not None
            and metrics.macro_f1 is not None
            and metrics.macro_f1_fp32 is not None
        ):
            checks.append(
                _check("macro_f1_drop", metrics.macro_f1_fp32 - metrics.macro_f1, budget.max_f1_drop, False)
            )
    elif agreement == "cosine":
        checks.append(_check("mean_cosine", metrics.mean_cosine or -1.0, budget.min_cosine, True))
    elif metrics.outputs:
        checks += _tensor_checks(metrics, budget)
    else:
        checks.append(_check("psnr_db", metrics.psnr_db, budget.min_psnr_db, True))
    if budget.max_abs_error is not None and not (agreement == "tensor" and metrics.outputs):
        checks.append(_check("max_abs", metrics.max_abs, budget.max_abs_error, False))
    primary = checks[0]
    if agreement == "tensor":  # the output furthest below its PSNR limit speaks for the variant
        primary = min((c for c in checks if c.name.startswith("psnr_db")), key=lambda c: c.margin)
    return GateResult(
        metric=primary.name,
        value=primary.value,
        budget=primary.limit,
        passed=all(c.passed for c in checks),
        margin=primary.margin,
        checks=checks,
    )
