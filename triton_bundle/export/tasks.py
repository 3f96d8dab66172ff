"""Task registry: what each task's exported graph takes and gives. Adding a task is one entry.

Each entry says which modality builds its inputs (text: tokenizer, vision: image processor, tensor:
inputs declared in the spec), which transformers auto class loads the checkpoint, how the model is
wrapped so its forward returns plain tensors in a fixed order, and how parity is judged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from triton_bundle.spec import ExportSpec

Agreement = Literal["labels", "cosine", "tensor", "tokens", "images"]
Modality = Literal["text", "vision", "tensor"]

TEXT_AXES = {0: "batch", 1: "sequence"}
IMAGE_AXES = {0: "batch"}  # height / width are fixed by the checkpoint's image processor


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


@dataclass(frozen=True)
class ExportTask:
    name: str
    wrap: Callable[[nn.Module, ExportSpec], nn.Module]
    agreement: Agreement
    modality: Modality = "text"
    auto_class: str | None = None  # transformers Auto* class that loads a checkpoint for this task
    # Empty for the tensor task: its outputs are declared in the spec (or discovered by running it).
    output_names: tuple[str, ...] = ()
    output_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    input_axes: dict[int, str] = field(default_factory=lambda: dict(TEXT_AXES))
    # A task whose export differs end to end (a decoder's KV cache) names its own stage: "module:function".
    export_stage: str | None = None
    # One label per example: the eval data's gold labels score it (accuracy, macro-F1).
    gold_labels: bool = False


def _decoder_with_past(model: nn.Module, export: ExportSpec) -> nn.Module:
    from triton_bundle.export.decoder import DecoderWithPast

    return DecoderWithPast(model)


TASKS: dict[str, ExportTask] = {
    "text-classification": ExportTask(
        name="text-classification",
        auto_class="AutoModelForSequenceClassification",
        wrap=ClassifierHead,
        output_names=("logits",),
        output_axes={"logits": {0: "batch"}},
        agreement="labels",
        gold_labels=True,
    ),
    "token-classification": ExportTask(
        name="token-classification",
        auto_class="AutoModelForTokenClassification",
        wrap=ClassifierHead,
        output_names=("logits",),
        output_axes={"logits": {0: "batch", 1: "sequence"}},
        agreement="labels",
    ),
    "feature-extraction": ExportTask(
        name="feature-extraction",
        auto_class="AutoModel",
        wrap=PooledEmbedding,
        output_names=("embedding",),
        output_axes={"embedding": {0: "batch"}},
        agreement="cosine",
    ),
    "image-classification": ExportTask(
        name="image-classification",
        modality="vision",
        auto_class="AutoModelForImageClassification",
        wrap=ImageClassifierHead,
        output_names=("logits",),
        output_axes={"logits": {0: "batch"}},
        agreement="labels",
        input_axes=dict(IMAGE_AXES),
        gold_labels=True,
    ),
    "text-generation": ExportTask(
        name="text-generation",
        auto_class="AutoModelForCausalLM",
        wrap=_decoder_with_past,
        # logits + present.<layer>.key/value; the past inputs and presents are named per layer at export
        output_names=("logits",),
        output_axes={"logits": {0: "batch", 1: "sequence"}},
        agreement="tokens",
        export_stage="triton_bundle.export.decoder_stage:export_decoder",
    ),
    "diffusion": ExportTask(
        name="diffusion",
        modality="vision",  # a diffusers checkpoint directory (source.kind huggingface)
        wrap=TensorOutputs,  # unused: the UNet's export stage wraps it (diffusion.unet.UNetForExport)
        output_names=("noise_pred",),
        output_axes={"noise_pred": {0: "batch"}},
        agreement="tensor",
        input_axes={},
        export_stage="triton_bundle.diffusion.export_stage:export_diffusion",
    ),
    "image-generation": ExportTask(
        name="image-generation",
        modality="tensor",
        wrap=TensorOutputs,
        output_names=("image",),
        output_axes={"image": {0: "batch"}},
        agreement="images",
        input_axes={},
        # latent + class in, image out; parity judged on the images at image.gate_seeds
        export_stage="triton_bundle.imagegen.export:export_generator",
    ),
    "tensor": ExportTask(
        name="tensor",
        modality="tensor",
        wrap=TensorOutputs,
        agreement="tensor",
        input_axes={},
    ),
}


def get_task(name: str) -> ExportTask:
    from triton_bundle.export.errors import UnsupportedTaskError

    if name not in TASKS:
        raise UnsupportedTaskError(f"no exporter for task '{name}' (registered: {', '.join(sorted(TASKS))})")
    return TASKS[name]


def tasks_for_checkpoint(config) -> list[str]:
    """Registered tasks whose auto class accepts this transformers config (for error messages)."""
    import transformers

    supported = []
    for task in TASKS.values():
        if task.auto_class is None:
            continue
        mapping = getattr(transformers, task.auto_class)._model_mapping
        if type(config) in mapping:
            supported.append(task.name)
    return supported
