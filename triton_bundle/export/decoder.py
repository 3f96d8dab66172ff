"""A causal LM as one ONNX-exportable graph for prefill and decode, with the KV cache as flat tensors.

The KV-cache trap: left to itself, transformers builds the causal mask from Python ints, which the
TorchScript exporter freezes at the traced (batch, new, past) lengths; the graph then matches PyTorch
only at that shape. Here the 4-D additive mask is computed from `attention_mask` and `input_ids`, tensors
the graph sees, and transformers passes a 4-D mask through untouched, so every shape gets its own mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Additive mask value: exp(-1e4) is 0 in float32 and the value survives an FP16 cast (finfo.min does not).
MASKED = -1.0e4

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS = "logits"


def past_name(layer: int, kind: str) -> str:
    return f"past_key_values.{layer}.{kind}"


def present_name(layer: int, kind: str) -> str:
    return f"present.{layer}.{kind}"


@dataclass(frozen=True)
class DecoderShape:
    """What the graph's cache tensors look like: [batch, kv_heads, past, head_dim] per layer and kind."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int

    @classmethod
    def of(cls, config) -> DecoderShape:
        config = config.get_text_config(decoder=True)
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(config.num_hidden_layers, kv_heads, head_dim, config.vocab_size)

    @property
    def past_names(self) -> list[str]:
        return [past_name(i, kind) for i in range(self.layers) for kind in ("key", "value")]

    @property
    def present_names(self) -> list[str]:
        return [present_name(i, kind) for i in range(self.layers) for kind in ("key", "value")]

    @property
    def input_names(self) -> list[str]:
        return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *self.past_names]

    @property
    def output_names(self) -> list[str]:
        return [LOGITS, *self.present_names]

    def axes(self) -> dict[str, dict[int, str]]:
        """Dynamic axes of every input and output, in graph order."""
        axes: dict[str, dict[int, str]] = {
            INPUT_IDS: {0: "batch", 1: "sequence"},
            ATTENTION_MASK: {0: "batch", 1: "total_sequence"},
            POSITION_IDS: {0: "batch", 1: "sequence"},
        }
        axes |= {name: {0: "batch", 2: "past_sequence"} for name in self.past_names}
        axes[LOGITS] = {0: "batch", 1: "sequence"}
        axes |= {name: {0: "batch", 2: "total_sequence"} for name in self.present_names}
        return axes

    def empty_past(self, batch: int, length: int = 0, dtype=None) -> dict[str, object]:
        """Zero past tensors (numpy), e.g. length 0 for a prefill."""
        import numpy as np

        shape = (batch, self.kv_heads, length, self.head_dim)
        return {name: np.zeros(shape, dtype or np.float32) for name in self.past_names}


def additive_causal_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, dtype) -> torch.Tensor:
    """[batch, 1, new, past + new]: 0 where a query may attend, MASKED elsewhere; built only from tensors."""
    key_ones = torch.ones_like(attention_mask[0])
    query_ones = torch.ones_like(input_ids[0])
    key_pos = key_ones.cumsum(0) - 1
    past_len = key_ones.sum() - query_ones.sum()
    query_pos = query_ones.cumsum(0) - 1 + past_len
    causal = key_pos.unsqueeze(0) <= query_pos.unsqueeze(1)  # [new, total]
    allowed = causal.unsqueeze(0).unsqueeze(0) & attention_mask.bool().unsqueeze(1).unsqueeze(1)
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.full((), MASKED, dtype=dtype))


class DecoderWithPast(nn.Module):
    """forward(input_ids, attention_mask, position_ids, *past) -> (logits, *present).

    attention_mask covers past + new tokens (0 marks left padding); position_ids are each token's
    position among the real tokens of its row. A past length of 0 is a prefill.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.shape = DecoderShape.of(model.config)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(self.shape.layers)]
        cache = DynamicCache(ddp_cache_data=pairs)
        dtype = next(self.model.parameters()).dtype
        out = self.model(
            input_ids=input_ids,
            attention_mask=additive_causal_mask(input_ids, attention_mask, dtype),
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        )
        presents = []
        for layer in out.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (out.logits, *presents)


def position_ids_for(attention_mask, new: int):
    """Positions of the last `new` tokens of each row, counting real tokens only (numpy, int64)."""
    import numpy as np

    positions = np.cumsum(attention_mask, axis=1) - 1
    positions = np.where(attention_mask == 0, 1, positions)  # padding: any valid index, it is masked
    return positions[:, -new:].astype(np.int64)
