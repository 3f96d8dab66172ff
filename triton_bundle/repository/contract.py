"""The tensor names and types clients see. Repository, client and load test all import these."""

from __future__ import annotations

# Ensemble (what clients call by the model's name): raw UTF-8 text in, labels / scores out.
TEXT_INPUT = "TEXT"  # TYPE_STRING, dims [1], batched (max_batch_size > 0)
LABELS_OUTPUT = "LABELS"  # TYPE_STRING, dims [top_k]: label names, best first
SCORES_OUTPUT = "SCORES"  # TYPE_FP32, dims [top_k]: softmax probabilities matching LABELS
PROBABILITIES_OUTPUT = "PROBABILITIES"  # TYPE_FP32, dims [num_labels]: in the label order of the spec
EMBEDDING_OUTPUT = "EMBEDDING"  # TYPE_FP32, dims [hidden]: feature-extraction (L2-normalised if asked)
IMAGE_INPUT = "IMAGE"  # TYPE_UINT8 encoded bytes (TYPE_STRING) for vision ensembles
# token-classification: one JSON array per text of {"label", "score", "word", "start", "end"} (+ "index"
# for aggregation 'none'); start / end are character offsets into the text sent, end exclusive.
ENTITIES_OUTPUT = "ENTITIES"  # TYPE_STRING, dims [1]
AGGREGATION_INPUT = "AGGREGATION"  # optional TYPE_STRING, dims [1]: none | simple | first | average | max

# The tensor model (clients that tokenize themselves may call it directly).
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
LOGITS = "logits"
# Tokenizer outputs only the token postprocess reads.
OFFSETS = "offsets"  # TYPE_INT32, dims [-1, 2]: character span of each token
SPECIAL_TOKENS_MASK = "special_tokens_mask"  # TYPE_INT32, dims [-1]: 1 = special or padding

# The model a client calls for each task: the ensemble takes raw inputs; a tensor model is its own entry.
ENTRY_ROLES = {
    "text-classification": "ensemble",
    "token-classification": "ensemble",
    "feature-extraction": "ensemble",
    "image-classification": "ensemble",
    "tensor": "tensor",
    "image-generation": "ensemble",  # seed (+ class_label) in, PNG bytes out (imagegen.contract)
    "diffusion": "ensemble",
    "text-generation": "ensemble",  # the decoupled decoder (or TensorRT-LLM ensemble) carries the spec's name
}


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


def model_for_role(name: str, role: str) -> str:
    return {
        "ensemble": ensemble_model,
        "tokenizer": tokenizer_model,
        "tensor": tensor_model,
        "postprocess": postprocess_model,
        "preprocess": preprocess_model,
    }[role](name)


def entry_model(name: str, task: str) -> str:
    """The model clients call for a spec (`infer --spec`, loadtest, capacity, benchmarks, the demo)."""
    return model_for_role(name, ENTRY_ROLES[task])
