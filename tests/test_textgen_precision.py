"""text-generation precision: FP16 / INT8-dynamic / INT8 Q/DQ gated on next-token agreement and perplexity,
and the ahead-of-time TensorRT-RTX build with batch, new-token and past-length profiles (GPT-2 and Llama)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from triton_bundle.generation.lm_metrics import judge_lm, score, token_batches
from triton_bundle.manifest import Manifest
from triton_bundle.spec import AccuracyBudget


def test_scores_of_identical_and_flipped_logits():
    rng = np.random.default_rng(0)
    batches = token_batches([[3, 1, 4, 1, 5], [2, 7]], pad_id=0, batch_size=2)
    ref = [rng.normal(size=(2, 5, 9)).astype(np.float32)]
    same = score(ref, ref, batches)
    assert same.next_token_agreement == 1.0 and same.perplexity_increase == 0.0 and same.positions == 5
    flipped = score(ref, [-ref[0]], batches)  # the FP32 favourite becomes the least likely token
    assert flipped.next_token_agreement == 0.0 and flipped.perplexity_increase > 0
    assert judge_lm(same, AccuracyBudget()).passed and not judge_lm(flipped, AccuracyBudget()).passed


@pytest.mark.slow
def test_variants_are_gated_published_and_recorded(textgen_workdir):
    from triton_bundle.precision.stage import make_variants

    spec, workdir = textgen_workdir
    result = make_variants(spec, workdir, force=True)
    assert set(result.reports) == {"fp16", "int8-dynamic", "int8"}
    for report in result.reports.values():
        checks = {c.name: c for c in report.gate.checks}
        assert set(checks) == {"next_token_agreement", "perplexity_increase"}
        assert report.passed == all(c.passed for c in checks.values())
    fp16 = result.reports["fp16"]
    assert fp16.passed and {c.name: c.value for c in fp16.gate.checks}["next_token_agreement"] >= 0.99
    record = Manifest.load(workdir, spec.name).stages["precision"]
    for variant in result.published:
        assert record.artifact(variant).is_file() and record.details["gates"][variant]["passed"]

    # A budget just above what a variant measured must reject it, and leave nothing published.
    report = result.reports["int8-dynamic"]
    values = {c.name: c.value for c in report.gate.checks}
    strict = spec.model_copy(deep=True)
    if values["next_token_agreement"] < 1.0:
        strict.precision.budget.min_next_token_agreement = min(1.0, values["next_token_agreement"] + 1e-3)
    else:
        strict.precision.budget.max_perplexity_increase = max(0.0, values["perplexity_increase"] - 1e-4)
        if values["perplexity_increase"] <= 0:
            pytest.skip("int8-dynamic matched FP32 exactly: no budget can be tighter")
    rejected = make_variants(strict, workdir, variants=["int8-dynamic"], force=True)
    assert not rejected.reports["int8-dynamic"].passed
    assert not (workdir / "precision" / "int8-dynamic").exists()
    gate = json.loads((workdir / "precision" / "int8-dynamic-rejected" / "gate.json").read_text())
    assert gate["passed"] is False


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_tensorrt_rtx_builds_decoder_with_past_profile(textgen_workdir, variant):
    pytest.importorskip("tensorrt_rtx")
    from triton_bundle.engine.stage import build_variant
    from triton_bundle.precision.stage import make_variants

    spec, workdir = textgen_workdir
    if (
        variant != "fp32"
        and variant not in Manifest.load(workdir, spec.name).stages.get("precision", {}).artifacts
    ):
        make_variants(spec, workdir, variants=[variant], force=True)
    result = build_variant(spec, workdir, variant, aot=True)
    assert result.passed, result.aot.describe()
    low, opt, high = result.profile_plan.profile.shapes["past_key_values.0.key"]
    assert low[2] == 0 and high[2] == spec.generation.max_context - 1  # prefill .. longest context
    _, mask_opt, mask_high = result.profile_plan.profile.shapes["attention_mask"]
    _, ids_opt, ids_high = result.profile_plan.profile.shapes["input_ids"]
    assert mask_opt[1] == ids_opt[1] + opt[2] and mask_high[1] == ids_high[1] + high[2]
