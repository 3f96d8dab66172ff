"""The tensor names and types clients see. Repository, client and load test all import these."""

from __future__ import annotations

# Ensemble (what clients call by the model's name): raw UTF-8 text in, labels / scores out.
TEXT_INPUT = "TEXT"  # TYPE_STRING, dims [1], batched (max_batch_size > 0)
LABELS_OUTPUT = "LABELS"  # TYPE_STRING, dims [top_k]: label names, best first
SCORES_OUTPUT = "SCORES"  # TYPE_FP32, dims [top_k]: softmax probabilities matching LABELS
PROBABILITIES_OUTPUT = "PROBABILITIES"  # TYPE_FP32, dims [num_labels]: in the label order of the spec
EMBEDDING_OUTPUT = "EMBEDDING"  # TYPE_FP32, dims [hidden]: feature-extraction (L2-normalised if asked)
IMAGE_INPUT = "IMAGE"  # TYPE_UINT8 encoded bytes (TYPE_STRING) for vision ensembles

# The tensor model (clients that tokenize themselves may call it directly).
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
LOGITS = "logits"


def tokenizer_model(name: str) -> str:
    return f"{name}_tokenizer"


def tensor_model(name: str) -> str:
    return f"{name}_model"


def postprocess_model(name: str) -> str:
    return f"{name}_postprocess"


def ensemble_model(name: str) -> str:
    return name


def preprocess_model(name: str) -> str:
    return f"{name}_preprocess"
