"""Per-task repository shapes: pre-processing model -> tensor model -> post-processing model, in an ensemble.

Clients call the ensemble by the model's name with raw inputs (UTF-8 text, encoded images) and get label
names / scores or embeddings back; the tensor model stays callable for clients that tokenize themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository import configs, contract, warmup
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
TEXT_TASKS = ("text-classification", "token-classification", "feature-extraction")
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


def _classifier_output(graph: GraphSignature) -> TensorInfo:
    return graph.output(contract.LOGITS) or graph.outputs[0]


def _labels(sources: ModelSources, count: int) -> list[str]:
    if sources.labels is None:
        raise RepositoryError(
            "no label names: set `labels` in the spec or give the checkpoint an id2label in config.json"
        )
    if len(sources.labels) != count:
        raise RepositoryError(
            f"the model outputs {count} classes but {len(sources.labels)} labels are known "
            f"({sources.labels}); make spec.labels match the model's classes"
        )
    return sources.labels


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


@dataclass
class _TextHead:
    """What a text task adds after tokenizer -> tensor model: models, ensemble steps and outputs."""

    models: list[ModelFiles]
    steps: list[configs.Step]
    outputs: list[tuple[str, int, list[int]]]
    names: dict[str, str]
    inputs: list[tuple[str, int, list[int], bool]] = field(default_factory=list)


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


def text_plan(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources) -> RepositoryPlan:
    graph = common_signature(sources)
    unknown = [t.name for t in graph.inputs if t.name not in TOKEN_INPUTS]
    if unknown:
        raise RepositoryError(
            f"the ONNX graph takes {unknown}, which a tokenizer does not produce (it makes {list(TOKEN_INPUTS)}); "
            "use task 'tensor' to serve it without a tokenizer"
        )
    tok = tokenizer_source(sources.checkpoint)
    sequence = sequence_range(graph, sources, options, (spec.shapes.sequence.min, spec.shapes.sequence.max))
    padding = "fixed" if sequence.fixed else options.resolved_padding
    notes = []
    if sequence.fixed and sequence.max != spec.shapes.sequence.max:
        notes.append(
            f"the graph's sequence dim is fixed at {sequence.max}: the tokenizer pads every text to it"
        )
    pad_values = {contract.INPUT_IDS: tok.pad_id, contract.ATTENTION_MASK: 0, contract.TOKEN_TYPE_IDS: 0}
    names = {"tokenizer": contract.tokenizer_model(spec.name), "tensor": contract.tensor_model(spec.name)}
    spans = spec.task == "token-classification"
    tokenizer_model = _tokenizer_model(
        names["tokenizer"], options, graph, tok, sequence, padding, sources, spans
    )

    labels_text = None
    label_file = ""
    if spec.task in ("text-classification", "token-classification"):
        labels_text = "\n".join(_labels(sources, _classifier_output(graph).dims[-1])) + "\n"
        label_file = configs.LABELS_FILE if options.expose_tensor_model else ""
    tensor = build_tensor_model(
        spec.name,
        options,
        sources,
        graph,
        pad_values=pad_values,
        sequence=sequence,
        label_file=label_file,
        labels_text=labels_text,
    )
    if options.warmup:
        _tensor_warmup(tensor, graph, tok, sources, sequence, options)

    token_map = {t.name: t.name for t in graph.inputs}
    tokenizer_out = token_map | (
        {n: n for n in (contract.OFFSETS, contract.SPECIAL_TOKENS_MASK)} if spans else {}
    )
    head = _TEXT_HEADS[spec.task](spec, options, graph, token_map, labels_text or "", tok, sequence)
    steps = [configs.Step(names["tokenizer"], {contract.TEXT_INPUT: contract.TEXT_INPUT}, tokenizer_out)]
    text_in = [(contract.TEXT_INPUT, mc.TYPE_STRING, [1], False), *head.inputs]
    names |= head.names | {"ensemble": contract.ensemble_model(spec.name)}
    ensemble = configs.ensemble_config(names["ensemble"], options, text_in, head.outputs, steps + head.steps)
    models = [ModelFiles(ensemble), tokenizer_model, tensor, *head.models]
    return RepositoryPlan(models, _with_entry(spec, names), notes, sequence, padding)


def _classification_head(
    spec: ModelSpec, options: RepositoryOptions, graph: GraphSignature, token_map: dict[str, str],
    labels_text: str, tok: TokenizerSource, sequence: SequenceRange,
) -> _TextHead:  # fmt: skip
    logits = _classifier_output(graph)
    name = contract.postprocess_model(spec.name)
    post_cfg = configs.classification_postprocess_config(name, options, logits, logits.dims[-1])
    if options.warmup:
        warmup.add_zero_warmup(post_cfg, [(logits.name, logits.data_type, [logits.dims[-1]])])
    files = {
        "1/model.py": python_model_source("classification_postprocess"),
        configs.LABELS_FILE: labels_text,
    }
    top_k = min(options.top_k, logits.dims[-1])
    results = (contract.LABELS_OUTPUT, contract.SCORES_OUTPUT, contract.PROBABILITIES_OUTPUT)
    return _TextHead(
        models=[ModelFiles(post_cfg, files)],
        steps=[
            configs.Step(contract.tensor_model(spec.name), token_map, {logits.name: logits.name}),
            configs.Step(name, {logits.name: logits.name}, {n: n for n in results}),
        ],
        outputs=[
            (contract.LABELS_OUTPUT, mc.TYPE_STRING, [top_k]),
            (contract.SCORES_OUTPUT, mc.TYPE_FP32, [top_k]),
            (contract.PROBABILITIES_OUTPUT, mc.TYPE_FP32, [logits.dims[-1]]),
        ],
        names={"postprocess": name},
    )


def _embedding_head(
    spec: ModelSpec, options: RepositoryOptions, graph: GraphSignature, token_map: dict[str, str],
    labels_text: str, tok: TokenizerSource, sequence: SequenceRange,
) -> _TextHead:  # fmt: skip
    embedding = graph.outputs[0]
    if embedding.dims[-1] == -1:
        raise RepositoryError(
            f"the embedding output '{embedding.name}' needs a fixed hidden size, got {list(embedding.dims)}"
        )
    mask = graph.input(contract.ATTENTION_MASK) if len(embedding.dims) == 3 else None
    if len(embedding.dims) == 3 and mask is None:
        raise RepositoryError("token-level outputs need an attention_mask input to mean-pool")
    name = contract.postprocess_model(spec.name)
    post_cfg = configs.embedding_postprocess_config(name, options, embedding, mask)
    post_inputs = {embedding.name: embedding.name} | ({mask.name: mask.name} if mask else {})
    return _TextHead(
        models=[ModelFiles(post_cfg, {"1/model.py": python_model_source("embedding_postprocess")})],
        steps=[
            configs.Step(contract.tensor_model(spec.name), token_map, {embedding.name: embedding.name}),
            configs.Step(name, post_inputs, {contract.EMBEDDING_OUTPUT: contract.EMBEDDING_OUTPUT}),
        ],
        outputs=[(contract.EMBEDDING_OUTPUT, mc.TYPE_FP32, [embedding.dims[-1]])],
        names={"postprocess": name},
    )


def _unk_id(tok: TokenizerSource, checkpoint: Path | None) -> int:
    """The unknown token's id as transformers sees it (tokenizer_config.json first, then the model's)."""
    tokenizer = Tokenizer.from_str(tok.tokenizer_json)
    unk = getattr(tokenizer.model, "unk_token", None)
    for file in ("tokenizer_config.json", "special_tokens_map.json"):
        path = checkpoint / file if checkpoint else None
        if path is not None and path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("unk_token")
            unk = value.get("content") if isinstance(value, dict) else value or unk
            break
    found = tokenizer.token_to_id(unk) if unk else None
    return -1 if found is None else int(found)


def _token_head(
    spec: ModelSpec, options: RepositoryOptions, graph: GraphSignature, token_map: dict[str, str],
    labels_text: str, tok: TokenizerSource, sequence: SequenceRange,
) -> _TextHead:  # fmt: skip
    logits = _classifier_output(graph)
    ids = graph.input(contract.INPUT_IDS)
    if len(logits.dims) != 3 or ids is None:
        raise RepositoryError(
            f"token-classification needs per-token logits [batch, sequence, labels] and an input_ids input, "
            f"got '{logits.name}' {list(logits.dims)}"
        )
    name = contract.postprocess_model(spec.name)
    settings = configs.TokenPostprocessSettings(
        logits, ids, _unk_id(tok, spec.resolve(spec.source.path)), sequence.max
    )
    files = {
        "1/model.py": python_model_source("token_postprocess"),
        # The grouping rules, imported by model.py (the Python backend puts the version dir on sys.path).
        "1/token_aggregation.py": python_model_source("token_aggregation"),
        "1/tokenizer.json": tok.tokenizer_json,
        configs.LABELS_FILE: labels_text,
    }
    spans = (ids.name, contract.OFFSETS, contract.SPECIAL_TOKENS_MASK)
    post_inputs = {n: n for n in (contract.TEXT_INPUT, *spans, logits.name)}
    post_inputs[contract.AGGREGATION_INPUT] = contract.AGGREGATION_INPUT
    return _TextHead(
        models=[ModelFiles(configs.token_postprocess_config(name, options, settings), files)],
        steps=[
            configs.Step(contract.tensor_model(spec.name), token_map, {logits.name: logits.name}),
            configs.Step(name, post_inputs, {contract.ENTITIES_OUTPUT: contract.ENTITIES_OUTPUT}),
        ],
        outputs=[(contract.ENTITIES_OUTPUT, mc.TYPE_STRING, [1])],
        names={"postprocess": name},
        inputs=[(contract.AGGREGATION_INPUT, mc.TYPE_STRING, [1], True)],
    )


_TEXT_HEADS = {
    "text-classification": _classification_head,
    "feature-extraction": _embedding_head,
    "token-classification": _token_head,
}


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


def vision_plan(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources) -> RepositoryPlan:
    graph = common_signature(sources)
    if len(graph.inputs) != 1 or len(graph.inputs[0].dims) != 4 or graph.inputs[0].dims[1] != 3:
        raise RepositoryError(
            f"image models need one input shaped [batch, 3, height, width], got {[(t.name, list(t.dims)) for t in graph.inputs]}"
        )
    pixels = graph.inputs[0]
    if -1 in pixels.dims[2:]:
        raise RepositoryError(
            f"'{pixels.name}' needs a fixed height and width for preprocessing, got {list(pixels.dims)}"
        )
    mean, std, rescale = _image_settings(sources.checkpoint)
    logits = _classifier_output(graph)
    labels = _labels(sources, logits.dims[-1])
    names = {
        "ensemble": contract.ensemble_model(spec.name),
        "preprocess": contract.preprocess_model(spec.name),
        "tensor": contract.tensor_model(spec.name),
        "postprocess": contract.postprocess_model(spec.name),
    }
    label_file = configs.LABELS_FILE if options.expose_tensor_model else ""
    labels_text = "\n".join(labels) + "\n"
    pre_cfg = configs.image_preprocess_config(names["preprocess"], options, pixels, mean, std, rescale)
    tensor = build_tensor_model(
        spec.name,
        options,
        sources,
        graph,
        pad_values={},
        sequence=None,
        label_file=label_file,
        labels_text=labels_text,
    )
    post_cfg = configs.classification_postprocess_config(
        names["postprocess"], options, logits, logits.dims[-1]
    )
    if options.warmup:
        warmup.add_zero_warmup(post_cfg, [(logits.name, logits.data_type, [logits.dims[-1]])])
        warmup.add_zero_warmup(tensor.config, [(pixels.name, pixels.data_type, list(pixels.dims[1:]))])
    top_k = min(options.top_k, logits.dims[-1])
    steps = [
        configs.Step(
            names["preprocess"], {contract.IMAGE_INPUT: contract.IMAGE_INPUT}, {pixels.name: pixels.name}
        ),
        configs.Step(names["tensor"], {pixels.name: pixels.name}, {logits.name: logits.name}),
        configs.Step(
            names["postprocess"],
            {logits.name: logits.name},
            {n: n for n in (contract.LABELS_OUTPUT, contract.SCORES_OUTPUT, contract.PROBABILITIES_OUTPUT)},
        ),
    ]
    ensemble = configs.ensemble_config(
        names["ensemble"],
        options,
        [(contract.IMAGE_INPUT, mc.TYPE_STRING, [1])],
        [
            (contract.LABELS_OUTPUT, mc.TYPE_STRING, [top_k]),
            (contract.SCORES_OUTPUT, mc.TYPE_FP32, [top_k]),
            (contract.PROBABILITIES_OUTPUT, mc.TYPE_FP32, [logits.dims[-1]]),
        ],
        steps,
    )
    models = [
        ModelFiles(ensemble),
        ModelFiles(pre_cfg, {"1/model.py": python_model_source("image_preprocess")}),
        tensor,
        ModelFiles(
            post_cfg,
            {
                "1/model.py": python_model_source("classification_postprocess"),
                configs.LABELS_FILE: labels_text,
            },
        ),
    ]
    return RepositoryPlan(models, _with_entry(spec, names))


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


def plan_for(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources) -> RepositoryPlan:
    if spec.task == "text-generation":
        from triton_bundle.repository.generation import generation_plan

        return generation_plan(spec, options, sources)
    if spec.task == "diffusion":  # seed -> DDIM loop (BLS to the UNet) -> PNG
        from triton_bundle.diffusion.repository import diffusion_plan

        return diffusion_plan(spec, options, sources)
    if spec.task == "image-generation":  # seed -> latent -> generator -> PNG
        from triton_bundle.imagegen.repository import image_plan

        return image_plan(spec, options, sources)
    if spec.task in TEXT_TASKS:
        return text_plan(spec, options, sources)
    if spec.task == "image-classification":
        return vision_plan(spec, options, sources)
    return tensor_plan(spec, options, sources)
