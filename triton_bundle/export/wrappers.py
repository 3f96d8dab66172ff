"""The modules the task registry wraps a checkpoint in, so forward returns plain tensors in a fixed order.

Kept apart from the registry (export/tasks.py) so reading the registry does not import torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from triton_bundle.spec import ExportSpec


def _text_kwargs(input_ids, attention_mask, token_type_ids) -> dict[str, torch.Tensor]:
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    return kwargs


class ClassifierHead(nn.Module):
    """Text logits only: [batch, labels] or [batch, sequence, labels]."""

    def __init__(self, model: nn.Module, export: ExportSpec | None = None) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(**_text_kwargs(input_ids, attention_mask, token_type_ids)).logits


class PooledEmbedding(nn.Module):
    """Sentence embedding: mean over real tokens or the first token, optional L2 norm, inside the graph."""

    def __init__(self, model: nn.Module, export: ExportSpec | None = None) -> None:
        super().__init__()
        export = export or ExportSpec()
        self.model = model
        self.pooling = export.pooling
        self.normalize = export.normalize

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.model(**_text_kwargs(input_ids, attention_mask, token_type_ids)).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled


# The lead's name for the mean-pooled wrapper; kept for code that imports it.
MeanPooledEmbedding = PooledEmbedding


class ImageClassifierHead(nn.Module):
    """Image logits only: [batch, labels] from normalised pixel_values [batch, 3, H, W]."""

    def __init__(self, model: nn.Module, export: ExportSpec | None = None) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


class TensorOutputs(nn.Module):
    """Any module: positional inputs in the spec's order; outputs flattened to a tuple of tensors."""

    def __init__(self, model: nn.Module, export: ExportSpec | None = None) -> None:
        super().__init__()
        self.model = model

    def name_inputs(self, names: Sequence[str]) -> TensorOutputs:
        """Give forward a signature with the spec's input names.

        The dynamo exporter maps dynamic axes to forward's parameters by name; `*inputs` would be
        one parameter. Names that are not Python identifiers keep the plain signature.
        """
        if not all(name.isidentifier() for name in names):
            return self
        forward = self.forward  # the bound class method

        def named_forward(*args):
            return forward(*args)

        named_forward.__signature__ = inspect.Signature(
            [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
        )
        object.__setattr__(self, "forward", named_forward)
        return self

    def forward(self, *inputs):
        out = self.model(*inputs)
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, dict):  # includes transformers ModelOutput
            out = tuple(out.values())
        return tuple(out)


def decoder_with_past(model: nn.Module, export: ExportSpec) -> nn.Module:
    from triton_bundle.export.decoder import DecoderWithPast

    return DecoderWithPast(model)
