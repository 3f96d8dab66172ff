"""Task registry: what each task's exported graph takes and gives. Adding a task is one entry.

Each entry says which modality builds its inputs (text: tokenizer, vision: image processor, tensor:
inputs declared in the spec), which transformers auto class loads the checkpoint, how the model is
wrapped so its forward returns plain tensors in a fixed order, and how parity is judged. A task whose
training, export, precision gate or repository differs end to end names its own stage functions as
"module:function" strings, imported only when that task runs (so this module stays torch-free).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from triton_bundle.spec import ExportSpec

Agreement = Literal["labels", "cosine", "tensor", "tokens", "images"]
Modality = Literal["text", "vision", "tensor"]

TEXT_AXES = {0: "batch", 1: "sequence"}
IMAGE_AXES = {0: "batch"}  # height / width are fixed by the checkpoint's image processor


def _wrapper(name: str) -> Callable[[Any, ExportSpec], Any]:
    """The wrapper class `name` of export/wrappers.py, imported (with torch) only when a model is wrapped."""

    def wrap(model: Any, export: ExportSpec) -> Any:
        from triton_bundle.export import wrappers

        return getattr(wrappers, name)(model, export)

    wrap.__name__ = name
    return wrap


@dataclass(frozen=True)
class ExportTask:
    name: str
    wrap: Callable[[Any, ExportSpec], Any]  # returns a torch nn.Module
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
    # The ensemble head after the tensor model (repository/heads.py HEADS): classification, embedding, ...
    head: str | None = None
    # A task whose repository differs from its modality's plan names its own: "module:function".
    repository_plan: str | None = None
    # finetune(spec, workdir, force) for a task with its own trainer, and the spec section it reads.
    finetune_stage: str | None = None
    finetune_section: str = "finetune"
    # make_variants(spec, workdir, wanted) for a task gated on more than its graph's outputs.
    precision_stage: str | None = None


TASKS: dict[str, ExportTask] = {
    "text-classification": ExportTask(
        name="text-classification",
        head="classification",
        auto_class="AutoModelForSequenceClassification",
        wrap=_wrapper("ClassifierHead"),
        output_names=("logits",),
        output_axes={"logits": {0: "batch"}},
        agreement="labels",
        gold_labels=True,
    ),
    "token-classification": ExportTask(
        name="token-classification",
        head="token-classification",
        auto_class="AutoModelForTokenClassification",
        wrap=_wrapper("ClassifierHead"),
        output_names=("logits",),
        output_axes={"logits": {0: "batch", 1: "sequence"}},
        agreement="labels",
    ),
    "feature-extraction": ExportTask(
        name="feature-extraction",
        head="embedding",
        auto_class="AutoModel",
        wrap=_wrapper("PooledEmbedding"),
        output_names=("embedding",),
        output_axes={"embedding": {0: "batch"}},
        agreement="cosine",
    ),
    "image-classification": ExportTask(
        name="image-classification",
        head="classification",
        modality="vision",
        auto_class="AutoModelForImageClassification",
        wrap=_wrapper("ImageClassifierHead"),
        output_names=("logits",),
        output_axes={"logits": {0: "batch"}},
        agreement="labels",
        input_axes=dict(IMAGE_AXES),
        gold_labels=True,
    ),
    "text-generation": ExportTask(
        name="text-generation",
        auto_class="AutoModelForCausalLM",
        wrap=_wrapper("decoder_with_past"),
        # logits + present.<layer>.key/value; the past inputs and presents are named per layer at export
        output_names=("logits",),
        output_axes={"logits": {0: "batch", 1: "sequence"}},
        agreement="tokens",
        export_stage="triton_bundle.export.decoder_stage:export_decoder",
        repository_plan="triton_bundle.repository.generation:generation_plan",
        finetune_stage="triton_bundle.generation.train:finetune_causal_lm",  # eval_accuracy: exp(-loss)
        precision_stage="triton_bundle.precision.decoder_variants:make_decoder_variants",  # next-token, perplexity
    ),
    "diffusion": ExportTask(
        name="diffusion",
        modality="vision",  # a diffusers checkpoint directory (source.kind huggingface)
        wrap=_wrapper("TensorOutputs"),  # unused: the export stage wraps the UNet itself
        output_names=("noise_pred",),
        output_axes={"noise_pred": {0: "batch"}},
        agreement="images",
        input_axes={},
        # sample + timestep + class in, predicted noise out; parity per timestep and on sampled images
        export_stage="triton_bundle.diffusion.export_stage:export_diffusion",
        repository_plan="triton_bundle.diffusion.repository:diffusion_plan",  # seed -> DDIM loop (BLS) -> PNG
        finetune_stage="triton_bundle.diffusion.train:finetune_diffusion",  # a UNet trained from scratch
        finetune_section="diffusion",
        precision_stage="triton_bundle.diffusion.variants:make_diffusion_variants",  # the served loop's images
    ),
    "image-generation": ExportTask(
        name="image-generation",
        modality="tensor",
        wrap=_wrapper("TensorOutputs"),
        output_names=("image",),
        output_axes={"image": {0: "batch"}},
        agreement="images",
        input_axes={},
        # latent + class in, image out; parity judged on the images at image.gate_seeds
        export_stage="triton_bundle.imagegen.export:export_generator",
        repository_plan="triton_bundle.imagegen.repository:image_plan",  # seed -> latent -> generator -> PNG
        finetune_stage="triton_bundle.imagegen.train:finetune_image_generator",  # on the digits
        precision_stage="triton_bundle.imagegen.variants:make_image_variants",  # PSNR / SSIM / classifier
    ),
    "tensor": ExportTask(
        name="tensor",
        modality="tensor",
        wrap=_wrapper("TensorOutputs"),
        agreement="tensor",
        input_axes={},
    ),
}


def stage_function(entry: str) -> Callable[..., Any]:
    """The function a registry entry names as "module:function", imported now."""
    module, function = entry.split(":")
    return getattr(importlib.import_module(module), function)


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
