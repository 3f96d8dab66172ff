"""Optimisation profiles: min / opt / max for every dynamic dim of every ONNX input.

Two sources: the spec's `shapes` section as written, or the spec with the sequence `opt` taken from
the token lengths of the evaluation data (TensorRT picks its kernels for `opt`, so it should be the
length real requests have). `max` always stays the spec's: the tokenizer truncates there, and a
request longer than the profile's max is refused by TensorRT ("dimension 1 between 1 and 64, got 80").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from triton_bundle.engine.errors import ProfileError
from triton_bundle.engine.manifest import ProfileDims
from triton_bundle.shapes import Profile, ShapeRange
from triton_bundle.spec import Range, ShapesSpec

ProfileSource = Literal["spec", "eval-data"]
# Tensor-core friendly: kernels for a multiple of 8 tokens serve the lengths just below it as well.
SEQUENCE_MULTIPLE = 8


@dataclass(frozen=True)
class GraphInput:
    """One ONNX graph input: each dim is an int (fixed) or the name of a dynamic dim."""

    name: str
    dims: tuple[int | str, ...]


class TokenLengthStats(BaseModel):
    """Token counts (special tokens included) of the evaluation texts."""

    count: int
    min: int
    p50: int
    p90: int
    p95: int
    p99: int
    max: int
    cap: int
    over_cap: int  # texts longer than the profile's max: the tokenizer truncates them

    @classmethod
    def from_lengths(cls, lengths: Sequence[int], cap: int) -> TokenLengthStats:
        if not lengths:
            raise ProfileError("no evaluation texts to measure token lengths on (data.eval is empty)")
        values = np.asarray(lengths, dtype=np.int64)

        def pct(q: float) -> int:
            # 'higher' returns a length that occurs in the data, never an interpolated one
            return int(np.percentile(values, q, method="higher"))

        return cls(
            count=len(values),
            min=int(values.min()),
            p50=pct(50),
            p90=pct(90),
            p95=pct(95),
            p99=pct(99),
            max=int(values.max()),
            cap=cap,
            over_cap=int((values > cap).sum()),
        )


class ProfilePlan(BaseModel):
    """The profile to build with, where its numbers came from, and the ranges per dim name."""

    source: ProfileSource
    profile: ProfileDims
    ranges: dict[str, Range]
    token_lengths: TokenLengthStats | None = None
    notes: list[str] = []


def graph_inputs(onnx_path: Path) -> list[GraphInput]:
    """The graph's real inputs (initializers listed as inputs by old exporters are left out)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs: list[GraphInput] = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims: list[int | str] = []
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                dims.append(dim.dim_param)
            elif dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(int(dim.dim_value))
            else:
                raise ProfileError(
                    f"{onnx_path}: input '{value.name}' axis {axis} is dynamic but unnamed; export it with "
                    "named dynamic axes (e.g. 'batch', 'sequence') so a profile can be given for it"
                )
        inputs.append(GraphInput(value.name, tuple(dims)))
    return inputs


def named_ranges(shapes: ShapesSpec, sequence: Range | None = None) -> dict[str, Range]:
    """Dim name -> range: 'batch', 'sequence' and every `shapes.extra` entry."""
    return {"batch": shapes.batch, "sequence": sequence or shapes.sequence, **shapes.extra}


def profile_for(inputs: Iterable[GraphInput], ranges: dict[str, Range]) -> ProfileDims:
    """One profile covering every input; a dim name with no range is an error naming the input."""
    shapes: Profile = {}
    for graph_input in inputs:
        low, opt, high = [], [], []
        for axis, dim in enumerate(graph_input.dims):
            if isinstance(dim, int):
                low.append(dim)
                opt.append(dim)
                high.append(dim)
                continue
            if dim not in ranges:
                raise ProfileError(
                    f"input '{graph_input.name}' axis {axis} is the dynamic dim '{dim}', which the spec gives "
                    f"no range for (known: {', '.join(sorted(ranges))}); add it under shapes.extra: "
                    f"{{{dim}: {{min: ..., opt: ..., max: ...}}}}"
                )
            r = ranges[dim]
            low.append(r.min)
            opt.append(r.opt)
            high.append(r.max)
        shapes[graph_input.name] = ShapeRange(low, opt, high)
    if not shapes:
        raise ProfileError("the graph has no inputs to build a profile for")
    return ProfileDims(shapes=shapes)


def sequence_range_from_lengths(stats: TokenLengthStats, spec_range: Range) -> Range:
    """The spec's sequence range with `opt` at the median token length, rounded up to a multiple of 8."""
    opt = math.ceil(stats.p50 / SEQUENCE_MULTIPLE) * SEQUENCE_MULTIPLE
    opt = min(max(opt, spec_range.min), spec_range.max)
    return Range(min=spec_range.min, opt=opt, max=spec_range.max)


def token_lengths(texts: Sequence[str], tokenizer_file: Path) -> list[int]:
    """Token count of each text with the checkpoint's own (fast) tokenizer, special tokens included."""
    from tokenizers import Tokenizer

    if not tokenizer_file.is_file():
        raise ProfileError(
            f"no tokenizer at {tokenizer_file} to measure the evaluation data's token lengths; "
            "use profiles from the spec (--profiles spec) or export a checkpoint with a fast tokenizer"
        )
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]


def spec_plan(shapes: ShapesSpec, onnx_path: Path) -> ProfilePlan:
    ranges = named_ranges(shapes)
    return ProfilePlan(source="spec", profile=profile_for(graph_inputs(onnx_path), ranges), ranges=ranges)


def eval_data_plan(shapes: ShapesSpec, onnx_path: Path, lengths: Sequence[int]) -> ProfilePlan:
    """The spec's profile with the sequence `opt` moved to where the evaluation data's lengths are."""
    stats = TokenLengthStats.from_lengths(lengths, cap=shapes.sequence.max)
    sequence = sequence_range_from_lengths(stats, shapes.sequence)
    ranges = named_ranges(shapes, sequence)
    notes = []
    if stats.over_cap:
        notes.append(
            f"{stats.over_cap} of {stats.count} evaluation texts are longer than shapes.sequence.max="
            f"{stats.cap} tokens (longest {stats.max}); they are truncated to it"
        )
    return ProfilePlan(
        source="eval-data",
        profile=profile_for(graph_inputs(onnx_path), ranges),
        ranges=ranges,
        token_lengths=stats,
        notes=notes,
    )


def decoder_ranges(shapes: ShapesSpec, max_context: int) -> dict[str, Range]:
    """A KV-cache decoder's dims: batch, new tokens, past tokens (0 for a prefill) and their sum
    (attention_mask, present.*).

    A prefill has no past, so the past minimum is 0 (TensorRT takes empty tensors); Range itself
    starts at 1 for every other dim, hence model_construct. The spec's shapes.extra may override both.
    """
    past_max = max_context - 1
    sequence = Range(
        min=1, opt=min(shapes.sequence.opt, max_context), max=min(shapes.sequence.max, max_context)
    )
    past = Range.model_construct(min=0, opt=min(max_context // 2, past_max), max=past_max)
    # Every profile point must be a consistent shape: total = past + new at min, opt and max alike.
    total = Range(min=sequence.min, opt=sequence.opt + past.opt, max=sequence.max + past.max)
    return {
        "batch": shapes.batch,
        "sequence": sequence,
        "past_sequence": past,
        "total_sequence": total,
    } | dict(shapes.extra)


def decoder_plan(shapes: ShapesSpec, max_context: int, onnx_path: Path) -> ProfilePlan:
    ranges = decoder_ranges(shapes, max_context)
    notes = [
        "decoder profile: past_sequence from 0 (prefill) to max_context - 1, total_sequence up to max_context"
    ]
    return ProfilePlan(
        source="spec", profile=profile_for(graph_inputs(onnx_path), ranges), ranges=ranges, notes=notes
    )
