"""Per-task request builders and typed results over the tensor contract in repository/contract.py.

Builders turn texts / images into input tensors; parsers turn output tensors into one typed result
per input, in input order. The clients (client.py) call these around `infer`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from triton_bundle.client.errors import InvalidInputError
from triton_bundle.client.metadata import ModelMetadata, TensorMetadata
from triton_bundle.repository.contract import (
    AGGREGATION_INPUT,
    EMBEDDING_OUTPUT,
    ENTITIES_OUTPUT,
    IMAGE_INPUT,
    LABELS_OUTPUT,
    PROBABILITIES_OUTPUT,
    SCORES_OUTPUT,
    TEXT_INPUT,
)

ImageLike = str | Path | bytes | np.ndarray
AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")


@dataclass
class InferenceResult:
    """Output tensors (batch dim first, rows in input order) and the model version that served each row
    (a row can come from a newer version if the server loaded one mid-run)."""

    outputs: dict[str, np.ndarray]
    model_versions: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.outputs[name]


class Classification(BaseModel):
    """One input's top-k labels, best first, with their scores."""

    text: str
    labels: list[str]
    scores: list[float]
    probabilities: list[float] | None = None
    model_version: str = ""


class ImageClassification(BaseModel):
    source: str
    labels: list[str]
    scores: list[float]
    model_version: str = ""


class Entity(BaseModel):
    """One tagged token (aggregation 'none') or word / entity group. `label` is the Hugging Face
    pipeline's `entity_group` (or `entity` for 'none'); `start` / `end` are character offsets into the
    text (end exclusive), so text[start:end] is the span; `word` is the decoded tokens, as in the pipeline."""

    word: str
    label: str
    score: float
    start: int
    end: int
    index: int | None = Field(None, description="the token's position (special tokens counted); 'none' only")

    def as_pipeline(self) -> dict[str, Any]:
        """The dict transformers' token-classification pipeline returns for this entity."""
        key = "entity" if self.index is not None else "entity_group"
        extra = {"index": self.index} if self.index is not None else {}
        return {
            key: self.label,
            "score": self.score,
            "word": self.word,
            "start": self.start,
            "end": self.end,
        } | extra


class TokenTags(BaseModel):
    """The entities found in one text, in text order."""

    text: str
    entities: list[Entity]
    model_version: str = ""


@dataclass
class Embeddings:
    """One vector per input text (rows in input order)."""

    texts: list[str]
    vectors: np.ndarray
    model_versions: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def _decode(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _pick_input(
    metadata: ModelMetadata, preferred: str, datatypes: set[str] | None, what: str
) -> TensorMetadata:
    """The contract's input if the model has it, else the model's only input (of a fitting type)."""
    names = metadata.input_names
    if preferred in names:
        return metadata.input(preferred)
    candidates = [t for t in metadata.inputs if datatypes is None or t.datatype in datatypes]
    if len(metadata.inputs) == 1 and candidates:
        return candidates[0]
    raise InvalidInputError(
        f"model '{metadata.name}' has no '{preferred}' input for {what} (inputs: {', '.join(names) or 'none'}); "
        "call infer_tensors() with explicit tensors instead"
    )


def _require_batched(metadata: ModelMetadata, what: str) -> None:
    if not metadata.batched:
        raise InvalidInputError(
            f"model '{metadata.name}' does not batch (max_batch_size 0); {what} needs a batched model "
            "(dim 0 = one row per input); call infer_tensors() for this model"
        )


def _require_outputs(metadata: ModelMetadata, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if not metadata.has_output(n)]
    if missing:
        raise InvalidInputError(
            f"model '{metadata.name}' has no {', '.join(missing)} output for {what} "
            f"(outputs: {', '.join(metadata.output_names) or 'none'})"
        )


def text_list(texts: Sequence[str]) -> list[str]:
    """The texts as a list, checked: a bare string or non-str items are mistakes worth naming."""
    if isinstance(texts, str):
        raise InvalidInputError("expected a list of texts, got a single string; wrap it in a list")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InvalidInputError(f"texts must be str; items {bad[:5]} are not")
    if not texts:
        raise InvalidInputError("no texts given: expected at least one")
    return list(texts)


def text_request(metadata: ModelMetadata, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """TEXT as a [n, 1] BYTES tensor (UTF-8), the ensemble's input."""
    texts = text_list(texts)
    _require_batched(metadata, "text inference")
    tensor = _pick_input(metadata, TEXT_INPUT, {"BYTES"}, "text")
    column = np.array([t.encode("utf-8") for t in texts], dtype=object)
    return {tensor.name: column.reshape((len(texts), *[1] * (len(tensor.shape) - 1)))}


def classification_outputs(metadata: ModelMetadata, with_probabilities: bool) -> list[str]:
    _require_outputs(metadata, [LABELS_OUTPUT, SCORES_OUTPUT], "classification")
    names = [LABELS_OUTPUT, SCORES_OUTPUT]
    if with_probabilities and metadata.has_output(PROBABILITIES_OUTPUT):
        names.append(PROBABILITIES_OUTPUT)
    return names


def parse_classifications(texts: Sequence[str], result: InferenceResult) -> list[Classification]:
    labels = result[LABELS_OUTPUT].reshape(len(texts), -1)
    scores = result[SCORES_OUTPUT].reshape(len(texts), -1)
    probs = result.outputs.get(PROBABILITIES_OUTPUT)
    probs = probs.reshape(len(texts), -1) if probs is not None else None
    return [
        Classification(
            text=text,
            labels=[_decode(v) for v in labels[i]],
            scores=[float(v) for v in scores[i]],
            probabilities=[float(v) for v in probs[i]] if probs is not None else None,
            model_version=result.model_versions[i] if result.model_versions else "",
        )
        for i, text in enumerate(texts)
    ]


def tag_request(
    metadata: ModelMetadata, texts: Sequence[str], aggregation: str | None
) -> dict[str, np.ndarray]:
    """TEXT, plus AGGREGATION per text when the caller overrides the served default."""
    inputs = text_request(metadata, texts)
    if aggregation is None:
        return inputs
    if aggregation not in AGGREGATION_STRATEGIES:
        raise InvalidInputError(
            f"unknown aggregation '{aggregation}': expected one of {', '.join(AGGREGATION_STRATEGIES)}"
        )
    if AGGREGATION_INPUT not in metadata.input_names:
        raise InvalidInputError(
            f"model '{metadata.name}' takes no '{AGGREGATION_INPUT}' input: it serves one aggregation "
            "strategy (repository.aggregation_strategy); regenerate the repository to choose per request"
        )
    column = np.array([aggregation.encode("utf-8")] * len(texts), dtype=object).reshape(-1, 1)
    return inputs | {AGGREGATION_INPUT: column}


def tag_outputs(metadata: ModelMetadata) -> list[str]:
    _require_outputs(metadata, [ENTITIES_OUTPUT], "token tagging (is it a token-classification model?)")
    return [ENTITIES_OUTPUT]


def parse_tags(texts: Sequence[str], result: InferenceResult) -> list[TokenTags]:
    rows = result[ENTITIES_OUTPUT].reshape(len(texts))
    tags = []
    for i, text in enumerate(texts):
        try:
            entities = [Entity.model_validate(item) for item in json.loads(_decode(rows[i]))]
        except (ValueError, TypeError, ValidationError) as exc:
            raise InvalidInputError(
                f"text {i}: the server's {ENTITIES_OUTPUT} is not a JSON list of entities ({exc}); "
                "is the repository from another triton-bundle version?"
            ) from None
        version = result.model_versions[i] if result.model_versions else ""
        tags.append(TokenTags(text=text, entities=entities, model_version=version))
    return tags


def embedding_outputs(metadata: ModelMetadata) -> list[str]:
    _require_outputs(metadata, [EMBEDDING_OUTPUT], "embeddings (is it a feature-extraction model?)")
    return [EMBEDDING_OUTPUT]


def parse_embeddings(texts: Sequence[str], result: InferenceResult) -> Embeddings:
    vectors = result[EMBEDDING_OUTPUT].reshape(len(texts), -1).astype(np.float32, copy=False)
    return Embeddings(texts=list(texts), vectors=vectors, model_versions=list(result.model_versions))


def _load_image(item: ImageLike, index: int) -> tuple[str, bytes | np.ndarray]:
    if isinstance(item, np.ndarray):
        return f"array[{index}]", item
    if isinstance(item, bytes):
        return f"bytes[{index}]", item
    path = Path(item)
    if not path.is_file():
        raise InvalidInputError(f"image {index}: no such file {path}")
    return str(path), path.read_bytes()


def _encode_png(array: np.ndarray, source: str) -> bytes:
    from PIL import Image

    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise InvalidInputError(
            f"{source}: expected a uint8 HxW or HxWxC array to encode, got {array.dtype} {list(array.shape)}"
        )
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode_image(blob: bytes, source: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    except UnidentifiedImageError:
        raise InvalidInputError(f"{source}: not an image file PIL can read") from None


def image_request(
    metadata: ModelMetadata, images: Sequence[ImageLike]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """IMAGE as encoded bytes (a BYTES input) or as stacked pixel arrays (a numeric input).

    Pixel inputs are not resized: the arrays must already have the model's shape (the check in
    metadata.validate_inputs says which).
    """
    if not images:
        raise InvalidInputError("no images given: expected at least one path or array")
    _require_batched(metadata, "image classification")
    tensor = _pick_input(metadata, IMAGE_INPUT, None, "images")
    loaded = [_load_image(item, i) for i, item in enumerate(images)]
    sources = [source for source, _ in loaded]
    if tensor.datatype == "BYTES":
        blobs = [
            _encode_png(data, source) if isinstance(data, np.ndarray) else data for source, data in loaded
        ]
        column = np.array(blobs, dtype=object)
        return sources, {tensor.name: column.reshape((len(blobs), *[1] * (len(tensor.shape) - 1)))}
    arrays = [
        data if isinstance(data, np.ndarray) else _decode_image(data, source) for source, data in loaded
    ]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InvalidInputError(
            f"images for model '{metadata.name}' input '{tensor.name}' (shape {tensor.shape[1:]}) differ "
            f"in size: {sorted(shapes)[:4]}; resize them to one size first"
        )
    return sources, {tensor.name: np.stack(arrays)}


def parse_image_classifications(sources: Sequence[str], result: InferenceResult) -> list[ImageClassification]:
    labels = result[LABELS_OUTPUT].reshape(len(sources), -1)
    scores = result[SCORES_OUTPUT].reshape(len(sources), -1)
    return [
        ImageClassification(
            source=source,
            labels=[_decode(v) for v in labels[i]],
            scores=[float(v) for v in scores[i]],
            model_version=result.model_versions[i] if result.model_versions else "",
        )
        for i, source in enumerate(sources)
    ]
