"""text-generation pieces that need no model: spec limits, the in-graph causal mask, decoder profiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.textgen import SPEC

from triton_bundle.engine.profiles import decoder_ranges
from triton_bundle.export.decoder import MASKED, additive_causal_mask, position_ids_for
from triton_bundle.spec import SpecError, load_spec


def test_example_spec_and_generation_limits(tmp_path):
    spec = load_spec(SPEC)
    assert spec.task == "text-generation" and spec.finetune.scratch is not None
    assert (spec.serving.http_port, spec.serving.grpc_port, spec.serving.metrics_port) == (8100, 8101, 8102)
    bad = tmp_path / "spec.yaml"
    bad.write_text(
        SPEC.read_text()
        .replace("max_new_tokens: 128", "max_new_tokens: 256")
        .replace("data/", f"{SPEC.parent}/data/")
    )
    with pytest.raises(SpecError, match="max_new_tokens 256 must be below max_context 256"):
        load_spec(bad)


def test_mask_follows_left_padding_and_past_length():
    attention = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])  # row 0: one pad; past 2, new 2
    mask = additive_causal_mask(torch.zeros(2, 2, dtype=torch.long), attention, torch.float32)
    allowed = (mask == 0).squeeze(1).int().tolist()
    assert allowed[0] == [[0, 1, 1, 0], [0, 1, 1, 1]]  # no pad column, causal over past + new
    assert allowed[1] == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert mask.min().item() == MASKED


def test_position_ids_count_real_tokens_only():
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_for(mask, 2).tolist() == [[1, 2], [3, 4]]


def test_decoder_profile_points_are_consistent_shapes():
    spec = load_spec(SPEC)
    ranges = decoder_ranges(spec.shapes, spec.generation.max_context)
    past, new, total = ranges["past_sequence"], ranges["sequence"], ranges["total_sequence"]
    assert past.min == 0 and past.max == spec.generation.max_context - 1
    for point in ("min", "opt", "max"):
        assert getattr(total, point) == getattr(past, point) + getattr(new, point)
