"""Ensemble heads: what a task adds after its tensor model (post-processing model, steps, outputs).

Text and vision plans share them: the plan builds the pre-processing step (tokenizer, image decoder)
and the tensor model, then asks the head its task's registry entry names (`ExportTask.head`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository import configs, contract, warmup
from triton_bundle.repository.layout import ModelFiles, python_model_source
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.repository.sources import ModelSources, RepositoryError, TokenizerSource
from triton_bundle.repository.tensor_model import SequenceRange
from triton_bundle.repository.tensors import GraphSignature, TensorInfo

CLASSIFICATION_RESULTS = (contract.LABELS_OUTPUT, contract.SCORES_OUTPUT, contract.PROBABILITIES_OUTPUT)


@dataclass(frozen=True)
class HeadInputs:
    """What every head may read: the tensor model's graph, how the ensemble feeds it, the label names."""

    name: str  # the spec's name (model names derive from it)
    options: RepositoryOptions
    graph: GraphSignature
    tensor_inputs: dict[str, str]  # ensemble tensor -> tensor model input
    labels_text: str = ""
    tokenizer: TokenizerSource | None = None  # text heads only
    sequence: SequenceRange | None = None
    checkpoint: Path | None = None


@dataclass
class Head:
    """What a head adds to the ensemble: models, steps (tensor model onwards), outputs, extra inputs."""

    models: list[ModelFiles]
    steps: list[configs.Step]
    outputs: list[tuple[str, int, list[int]]]
    names: dict[str, str]
    inputs: list[tuple[str, int, list[int], bool]] = field(default_factory=list)


@dataclass(frozen=True)
class HeadKind:
    build: Callable[[HeadInputs], Head]
    labels: bool = False  # the graph's classes need names (labels.txt)
    spans: bool = False  # the tokenizer also emits character offsets and a special-tokens mask


def classifier_output(graph: GraphSignature) -> TensorInfo:
    return graph.output(contract.LOGITS) or graph.outputs[0]


def labels_text(sources: ModelSources, count: int) -> str:
    """labels.txt for a classifier with `count` classes, or a clear error when the names are unknown."""
    if sources.labels is None:
        raise RepositoryError(
            "no label names: set `labels` in the spec or give the checkpoint an id2label in config.json"
        )
    if len(sources.labels) != count:
        raise RepositoryError(
            f"the model outputs {count} classes but {len(sources.labels)} labels are known "
            f"({sources.labels}); make spec.labels match the model's classes"
        )
    return "\n".join(sources.labels) + "\n"


def _tensor_step(inputs: HeadInputs, output: TensorInfo) -> configs.Step:
    return configs.Step(contract.tensor_model(inputs.name), inputs.tensor_inputs, {output.name: output.name})


def classification_head(inputs: HeadInputs) -> Head:
    """Logits -> top-k label names, scores and the full probability row (text and image classifiers)."""
    logits = classifier_output(inputs.graph)
    name = contract.postprocess_model(inputs.name)
    post_cfg = configs.classification_postprocess_config(name, inputs.options, logits, logits.dims[-1])
    if inputs.options.warmup:
        warmup.add_zero_warmup(post_cfg, [(logits.name, logits.data_type, [logits.dims[-1]])])
    files = {
        "1/model.py": python_model_source("classification_postprocess"),
        configs.LABELS_FILE: inputs.labels_text,
    }
    top_k = min(inputs.options.top_k, logits.dims[-1])
    return Head(
        models=[ModelFiles(post_cfg, files)],
        steps=[
            _tensor_step(inputs, logits),
            configs.Step(name, {logits.name: logits.name}, {n: n for n in CLASSIFICATION_RESULTS}),
        ],
        outputs=[
            (contract.LABELS_OUTPUT, mc.TYPE_STRING, [top_k]),
            (contract.SCORES_OUTPUT, mc.TYPE_FP32, [top_k]),
            (contract.PROBABILITIES_OUTPUT, mc.TYPE_FP32, [logits.dims[-1]]),
        ],
        names={"postprocess": name},
    )


def embedding_head(inputs: HeadInputs) -> Head:
    """Pooled (or token-level, mean-pooled here) hidden states -> one embedding row per text."""
    graph = inputs.graph
    embedding = graph.outputs[0]
    if embedding.dims[-1] == -1:
        raise RepositoryError(
            f"the embedding output '{embedding.name}' needs a fixed hidden size, got {list(embedding.dims)}"
        )
    mask = graph.input(contract.ATTENTION_MASK) if len(embedding.dims) == 3 else None
    if len(embedding.dims) == 3 and mask is None:
        raise RepositoryError("token-level outputs need an attention_mask input to mean-pool")
    name = contract.postprocess_model(inputs.name)
    post_cfg = configs.embedding_postprocess_config(name, inputs.options, embedding, mask)
    post_inputs = {embedding.name: embedding.name} | ({mask.name: mask.name} if mask else {})
    return Head(
        models=[ModelFiles(post_cfg, {"1/model.py": python_model_source("embedding_postprocess")})],
        steps=[
            _tensor_step(inputs, embedding),
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


def token_head(inputs: HeadInputs) -> Head:
    """Per-token logits -> entities (JSON per text) grouped as the request's AGGREGATION asks."""
    logits = classifier_output(inputs.graph)
    ids = inputs.graph.input(contract.INPUT_IDS)
    if len(logits.dims) != 3 or ids is None:
        raise RepositoryError(
            f"token-classification needs per-token logits [batch, sequence, labels] and an input_ids input, "
            f"got '{logits.name}' {list(logits.dims)}"
        )
    tok, sequence = inputs.tokenizer, inputs.sequence
    assert tok is not None and sequence is not None, "token_head is a text head"
    name = contract.postprocess_model(inputs.name)
    settings = configs.TokenPostprocessSettings(logits, ids, _unk_id(tok, inputs.checkpoint), sequence.max)
    files = {
        "1/model.py": python_model_source("token_postprocess"),
        # The grouping rules, imported by model.py (the Python backend puts the version dir on sys.path).
        "1/token_aggregation.py": python_model_source("token_aggregation"),
        "1/tokenizer.json": tok.tokenizer_json,
        configs.LABELS_FILE: inputs.labels_text,
    }
    spans = (ids.name, contract.OFFSETS, contract.SPECIAL_TOKENS_MASK)
    post_inputs = {n: n for n in (contract.TEXT_INPUT, *spans, logits.name)}
    post_inputs[contract.AGGREGATION_INPUT] = contract.AGGREGATION_INPUT
    return Head(
        models=[ModelFiles(configs.token_postprocess_config(name, inputs.options, settings), files)],
        steps=[
            _tensor_step(inputs, logits),
            configs.Step(name, post_inputs, {contract.ENTITIES_OUTPUT: contract.ENTITIES_OUTPUT}),
        ],
        outputs=[(contract.ENTITIES_OUTPUT, mc.TYPE_STRING, [1])],
        names={"postprocess": name},
        inputs=[(contract.AGGREGATION_INPUT, mc.TYPE_STRING, [1], True)],
    )


# Keyed by `ExportTask.head` in the task registry (triton_bundle/export/tasks.py).
HEADS: dict[str, HeadKind] = {
    "classification": HeadKind(classification_head, labels=True),
    "embedding": HeadKind(embedding_head),
    "token-classification": HeadKind(token_head, labels=True, spans=True),
}


def head_kind(task: str, head: str | None) -> HeadKind:
    if head is None or head not in HEADS:
        raise RepositoryError(
            f"task '{task}' names no ensemble head the repository knows ({head!r}; known: {sorted(HEADS)})"
        )
    return HEADS[head]
