"""Per-task repository shapes: pre-processing model -> tensor model -> post-processing model, in an ensemble.

Clients call the ensemble by the model's name with raw inputs (UTF-8 text, encoded images) and get label
names / scores or embeddings back; the tensor model stays callable for clients that tokenize themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.export.tasks import get_task, stage_function
from triton_bundle.repository import configs, contract, warmup
from triton_bundle.repository.heads import HeadInputs, classifier_output, head_kind, labels_text
from triton_bundle.repository.layout import ModelFiles, python_model_source
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.repository.sources import ModelSources, RepositoryError, TokenizerSource, tokenizer_source
from triton_bundle.repository.tensor_model import (
    SequenceRange,
    build_tensor_model,
    common_signature,
    sequence_range,
)
from triton_bundle.repository.tensors import GraphSignature, TensorInfo
from triton_bundle.spec import ModelSpec

TOKEN_INPUTS = (contract.INPUT_IDS, contract.ATTENTION_MASK, contract.TOKEN_TYPE_IDS)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class RepositoryPlan:
    models: list[ModelFiles]
    model_names: dict[str, str]  # role (ensemble, tokenizer, tensor, postprocess, preprocess) -> model name
    notes: list[str] = field(default_factory=list)
    sequence: SequenceRange | None = None
    padding: str | None = None


def _pad_width(length: int, sequence: SequenceRange, padding: str, bucket: int) -> int:
    """The width the tokenizer model pads a request to (mirrors python_models/text_tokenizer.py)."""
    if sequence.fixed or padding == "fixed":
        return sequence.max
    if padding == "bucket":
        length = -(-length // bucket) * bucket
    return min(sequence.max, max(sequence.min, length))


# ------------------------------------------------------------------------------------------------- text


def _token_rows(
    tokenizer: Tokenizer, text: str, width: int, inputs: tuple[TensorInfo, ...], pad_id: int
) -> dict[str, np.ndarray]:
    tokenizer.enable_truncation(max_length=width)
    tokenizer.no_padding()
    encoding = tokenizer.encode(text)
    n = len(encoding.ids)
    rows = {
        contract.INPUT_IDS: np.full(width, pad_id, np.int64),
        contract.ATTENTION_MASK: np.zeros(width, np.int64),
        contract.TOKEN_TYPE_IDS: np.zeros(width, np.int64),
    }
    rows[contract.INPUT_IDS][:n] = encoding.ids
    rows[contract.ATTENTION_MASK][:n] = encoding.attention_mask
    rows[contract.TOKEN_TYPE_IDS][:n] = encoding.type_ids
    return {t.name: rows[t.name] for t in inputs}


def _tensor_warmup(
    model: ModelFiles,
    graph: GraphSignature,
    tok: TokenizerSource,
    sources: ModelSources,
    sequence: SequenceRange,
    options: RepositoryOptions,
) -> None:
    tokenizer = Tokenizer.from_str(tok.tokenizer_json)
    text = sources.sample_texts[0]
    real_len = len(tokenizer.encode(text).ids)
    width = _pad_width(real_len, sequence, options.resolved_padding, options.bucket_size)
    long_text = " ".join(sources.sample_texts)  # real words filling the longest shape served
    samples = [("real", 1, _token_rows(tokenizer, text, width, graph.inputs, tok.pad_id))]
    samples.append(
        (
            "max",
            options.max_batch_size,
            _token_rows(tokenizer, long_text, sequence.max, graph.inputs, tok.pad_id),
        )
    )
    warmup.add_token_warmup(model.config, model.files, graph.inputs, samples)


def _tokenizer_model(
    name: str, options: RepositoryOptions, graph: GraphSignature, tok: TokenizerSource, sequence: SequenceRange,
    padding: str, sources: ModelSources, spans: bool,
) -> ModelFiles:  # fmt: skip
    settings = configs.TokenizerSettings(
        max_length=sequence.max,
        min_length=sequence.min,
        padding=padding,
        bucket_size=options.bucket_size,
        pad_id=tok.pad_id,
        outputs=graph.inputs,
        spans=spans,
    )
    config = configs.tokenizer_config(name, options, settings)
    model = ModelFiles(
        config=config,
        files={"1/model.py": python_model_source("text_tokenizer"), "1/tokenizer.json": tok.tokenizer_json},
    )
    if options.warmup:
        batches = (1, options.max_batch_size)
        warmup.add_text_warmup(config, model.files, contract.TEXT_INPUT, sources.sample_texts[0], batches)
    return model


def _token_graph(sources: ModelSources) -> GraphSignature:
    """The graph every variant shares, checked to take only what a tokenizer makes."""
    graph = common_signature(sources)
    unknown = [t.name for t in graph.inputs if t.name not in TOKEN_INPUTS]
    if unknown:
        raise RepositoryError(
            f"the ONNX graph takes {unknown}, which a tokenizer does not produce (it makes {list(TOKEN_INPUTS)}); "
            "use task 'tensor' to serve it without a tokenizer"
        )
    return graph


def _sequence_and_padding(
    spec: ModelSpec, options: RepositoryOptions, sources: ModelSources, graph: GraphSignature
) -> tuple[SequenceRange, str, list[str]]:
    sequence = sequence_range(graph, sources, options, (spec.shapes.sequence.min, spec.shapes.sequence.max))
    padding = "fixed" if sequence.fixed else options.resolved_padding
    notes = []
    if sequence.fixed and sequence.max != spec.shapes.sequence.max:
        notes.append(
            f"the graph's sequence dim is fixed at {sequence.max}: the tokenizer pads every text to it"
        )
    return sequence, padding, notes


def _text_tensor_model(
    spec: ModelSpec, options: RepositoryOptions, sources: ModelSources, graph: GraphSignature,
    tok: TokenizerSource, sequence: SequenceRange, labels: str,
) -> ModelFiles:  # fmt: skip
    pad_values = {contract.INPUT_IDS: tok.pad_id, contract.ATTENTION_MASK: 0, contract.TOKEN_TYPE_IDS: 0}
    tensor = build_tensor_model(
        spec.name,
        options,
        sources,
        graph,
        pad_values=pad_values,
        sequence=sequence,
        label_file=configs.LABELS_FILE if labels and options.expose_tensor_model else "",
        labels_text=labels or None,
    )
    if options.warmup:
        _tensor_warmup(tensor, graph, tok, sources, sequence, options)
    return tensor


def text_plan(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources) -> RepositoryPlan:
    """Tokenizer -> tensor model -> the task's head, in an ensemble that takes raw text."""
    kind = head_kind(spec.task, get_task(spec.task).head)
    graph = _token_graph(sources)
    tok = tokenizer_source(sources.checkpoint)
    sequence, padding, notes = _sequence_and_padding(spec, options, sources, graph)
    names = {"tokenizer": contract.tokenizer_model(spec.name), "tensor": contract.tensor_model(spec.name)}
    tokenizer_model = _tokenizer_model(
        names["tokenizer"], options, graph, tok, sequence, padding, sources, kind.spans
    )
    labels = labels_text(sources, classifier_output(graph).dims[-1]) if kind.labels else ""
    tensor = _text_tensor_model(spec, options, sources, graph, tok, sequence, labels)
    token_map = {t.name: t.name for t in graph.inputs}
    checkpoint = spec.resolve(spec.source.path)
    head = kind.build(HeadInputs(spec.name, options, graph, token_map, labels, tok, sequence, checkpoint))
    tokenizer_out = token_map | (
        {n: n for n in (contract.OFFSETS, contract.SPECIAL_TOKENS_MASK)} if kind.spans else {}
    )
    steps = [configs.Step(names["tokenizer"], {contract.TEXT_INPUT: contract.TEXT_INPUT}, tokenizer_out)]
    text_in = [(contract.TEXT_INPUT, mc.TYPE_STRING, [1], False), *head.inputs]
    names |= head.names | {"ensemble": contract.ensemble_model(spec.name)}
    ensemble = configs.ensemble_config(names["ensemble"], options, text_in, head.outputs, steps + head.steps)
    models = [ModelFiles(ensemble), tokenizer_model, tensor, *head.models]
    return RepositoryPlan(models, _with_entry(spec, names), notes, sequence, padding)


def _with_entry(spec: ModelSpec, names: dict[str, str]) -> dict[str, str]:
    """The roles' model names plus 'entry', the model clients call (contract.entry_model)."""
    entry = contract.entry_model(spec.name, spec.task)
    if entry not in names.values():
        raise RepositoryError(f"the repository plan for '{spec.name}' lacks its entry model '{entry}'")
    return names | {"entry": entry}


# ----------------------------------------------------------------------------------------------- vision


def _image_settings(checkpoint: Path | None) -> tuple[list[float], list[float], float]:
    config = checkpoint / "preprocessor_config.json" if checkpoint else None
    if config is None or not config.is_file():
        return list(IMAGENET_MEAN), list(IMAGENET_STD), 1 / 255
    data = json.loads(config.read_text(encoding="utf-8"))
    rescale = data.get("rescale_factor", 1 / 255) if data.get("do_rescale", True) else 1.0
    mean = data.get("image_mean", IMAGENET_MEAN) if data.get("do_normalize", True) else [0.0, 0.0, 0.0]
    std = data.get("image_std", IMAGENET_STD) if data.get("do_normalize", True) else [1.0, 1.0, 1.0]
    return [float(v) for v in mean], [float(v) for v in std], float(rescale)


def _image_input(graph: GraphSignature) -> TensorInfo:
    if len(graph.inputs) != 1 or len(graph.inputs[0].dims) != 4 or graph.inputs[0].dims[1] != 3:
        raise RepositoryError(
            f"image models need one input shaped [batch, 3, height, width], got {[(t.name, list(t.dims)) for t in graph.inputs]}"
        )
    pixels = graph.inputs[0]
    if -1 in pixels.dims[2:]:
        raise RepositoryError(
            f"'{pixels.name}' needs a fixed height and width for preprocessing, got {list(pixels.dims)}"
        )
    return pixels


def vision_plan(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources) -> RepositoryPlan:
    """Image decoder + normaliser -> tensor model -> the task's head, in an ensemble that takes bytes."""
    kind = head_kind(spec.task, get_task(spec.task).head)
    graph = common_signature(sources)
    pixels = _image_input(graph)
    mean, std, rescale = _image_settings(sources.checkpoint)
    labels = labels_text(sources, classifier_output(graph).dims[-1]) if kind.labels else ""
    names = {"preprocess": contract.preprocess_model(spec.name), "tensor": contract.tensor_model(spec.name)}
    pre_cfg = configs.image_preprocess_config(names["preprocess"], options, pixels, mean, std, rescale)
    tensor = build_tensor_model(
        spec.name,
        options,
        sources,
        graph,
        pad_values={},
        sequence=None,
        label_file=configs.LABELS_FILE if labels and options.expose_tensor_model else "",
        labels_text=labels or None,
    )
    pixel_map = {pixels.name: pixels.name}
    head = kind.build(HeadInputs(spec.name, options, graph, pixel_map, labels))
    if options.warmup:
        warmup.add_zero_warmup(tensor.config, [(pixels.name, pixels.data_type, list(pixels.dims[1:]))])
    steps = [configs.Step(names["preprocess"], {contract.IMAGE_INPUT: contract.IMAGE_INPUT}, pixel_map)]
    image_in = [(contract.IMAGE_INPUT, mc.TYPE_STRING, [1]), *head.inputs]
    names = {"ensemble": contract.ensemble_model(spec.name)} | names | head.names
    ensemble = configs.ensemble_config(names["ensemble"], options, image_in, head.outputs, steps + head.steps)
    pre = ModelFiles(pre_cfg, {"1/model.py": python_model_source("image_preprocess")})
    return RepositoryPlan([ModelFiles(ensemble), pre, tensor, *head.models], _with_entry(spec, names))


def tensor_plan(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources) -> RepositoryPlan:
    """task 'tensor': the graph alone, its inputs and outputs as exported."""
    graph = common_signature(sources)
    tensor = build_tensor_model(
        spec.name, options, sources, graph, pad_values={}, sequence=None, label_file="", labels_text=None
    )
    return RepositoryPlan(
        [tensor],
        _with_entry(spec, {"tensor": tensor.name}),
        ["task 'tensor': no ensemble; clients call the tensor model"],
    )


# The plan each input modality gets unless its task's registry entry names its own (`repository_plan`).
_PLANS: dict[str, Callable[[ModelSpec, RepositoryOptions, ModelSources], RepositoryPlan]] = {
    "text": text_plan,
    "vision": vision_plan,
    "tensor": tensor_plan,
}


def plan_for(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources) -> RepositoryPlan:
    """The task's repository plan, chosen by its registry entry (export/tasks.py)."""
    task = get_task(spec.task)
    if task.repository_plan:  # e.g. text-generation: a decoupled decoder model of its own
        return stage_function(task.repository_plan)(spec, options, sources)
    return _PLANS[task.modality](spec, options, sources)
