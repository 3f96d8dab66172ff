"""Language-model quality of a precision variant against FP32, teacher-forced on held-out text.

next-token agreement: the share of real positions where the variant's top-1 next token equals FP32's.
perplexity increase: exp(mean NLL of the true next token) of the variant over FP32's, minus 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from triton_bundle.generation.ort_decoder import OrtDecoder, left_pad
from triton_bundle.precision.gate import GateCheck, GateResult
from triton_bundle.spec import AccuracyBudget


@dataclass(frozen=True)
class TokenBatch:
    ids: np.ndarray  # [batch, length], left-padded
    mask: np.ndarray


@dataclass(frozen=True)
class LMScores:
    positions: int
    next_token_agreement: float
    perplexity: float
    perplexity_fp32: float
    max_abs: float  # largest |variant - FP32| logit
    psnr_db: float  # FP32 logits as the signal, the difference as noise

    @property
    def perplexity_increase(self) -> float:
        return self.perplexity / self.perplexity_fp32 - 1.0


def token_batches(rows: Sequence[Sequence[int]], pad_id: int, batch_size: int) -> list[TokenBatch]:
    return [TokenBatch(*left_pad(rows[i : i + batch_size], pad_id)) for i in range(0, len(rows), batch_size)]


def _nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(-1))
    return log_z - np.take_along_axis(shifted, targets[..., None], -1)[..., 0]


def all_logits(decoder: OrtDecoder, batches: Sequence[TokenBatch]) -> list[np.ndarray]:
    return [decoder.logits(b.ids, b.mask) for b in batches]


def score(
    reference: Sequence[np.ndarray], variant: Sequence[np.ndarray], batches: Sequence[TokenBatch]
) -> LMScores:
    """Compare next-token predictions at every position whose next token is real."""
    agree = nll_ref = nll_var = 0.0
    count, max_abs, signal, noise = 0, 0.0, 0.0, 0.0
    for ref, var, batch in zip(reference, variant, batches, strict=True):
        valid = (batch.mask[:, :-1] == 1) & (batch.mask[:, 1:] == 1)
        targets = batch.ids[:, 1:]
        agree += float(((ref[:, :-1].argmax(-1) == var[:, :-1].argmax(-1)) & valid).sum())
        nll_ref += float((_nll(ref[:, :-1], targets) * valid).sum())
        nll_var += float((_nll(var[:, :-1], targets) * valid).sum())
        count += int(valid.sum())
        real = batch.mask.astype(bool)
        diff = (var - ref)[real]
        max_abs = max(max_abs, float(np.abs(diff).max(initial=0.0)))
        signal += float((ref[real] ** 2).sum())
        noise += float((diff**2).sum())
    count = max(count, 1)
    psnr = 10 * math.log10(signal / noise) if noise > 0 else 200.0
    return LMScores(count, agree / count, math.exp(nll_var / count), math.exp(nll_ref / count), max_abs, psnr)


def judge_lm(scores: LMScores, budget: AccuracyBudget) -> GateResult:
    checks = [
        GateCheck(
            name="next_token_agreement",
            value=scores.next_token_agreement,
            limit=budget.min_next_token_agreement,
            higher_is_better=True,
            passed=scores.next_token_agreement >= budget.min_next_token_agreement,
        ),
        GateCheck(
            name="perplexity_increase",
            value=scores.perplexity_increase,
            limit=budget.max_perplexity_increase,
            higher_is_better=False,
            passed=scores.perplexity_increase <= budget.max_perplexity_increase,
        ),
    ]
    return GateResult(
        metric=checks[0].name,
        value=checks[0].value,
        budget=checks[0].limit,
        passed=all(c.passed for c in checks),
        margin=checks[0].margin,
        checks=checks,
    )
