"""Triton Python-backend postprocess for token classification: per-token logits in, entities out.

Shipped by triton-bundle and copied to `<model>/1/model.py`, with token_aggregation.py beside it (the
grouping rules of Hugging Face's token-classification pipeline). Parameters:
  labels_file            label names, one per line in class order (relative to the model directory)
  tokenizer_file         tokenizer.json in the version directory (token strings, the word decoder)
  unk_id                 the tokenizer's unknown-token id (-1: none)
  aggregation_strategy   the default grouping: none | simple | first | average | max
  ignore_labels          comma-separated labels left out of the answer (default "O")
  logits_name            the tensor model's per-token logits

Inputs per request: TEXT [n, 1], input_ids / offsets / special_tokens_mask from the tokenizer, logits
[n, tokens, labels] from the model (padding positions are marked special), and an optional
AGGREGATION [n, 1] that overrides the strategy for that request. Output: ENTITIES [n, 1], one JSON
array per text of {"label", "score", "word", "start", "end"} (+ "index" for strategy none).
A request that is malformed or names an unknown strategy gets its own error; the batch goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from token_aggregation import AggregationError, TokenizerView, aggregate, check_strategy
from tokenizers import Tokenizer

TEXT_INPUT = "TEXT"
AGGREGATION_INPUT = "AGGREGATION"
ENTITIES_OUTPUT = "ENTITIES"
TOKEN_INPUTS = ("input_ids", "offsets", "special_tokens_mask")
CHARS_PER_TOKEN = 100  # the tokenizer model cuts texts to max_length * 100 characters: decode the same way


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        model_dir = Path(args["model_repository"])
        labels_path = model_dir / params.get("labels_file", "labels.txt")
        tokenizer_path = model_dir / args["model_version"] / params.get("tokenizer_file", "tokenizer.json")
        for path, what in ((labels_path, "labels file"), (tokenizer_path, "tokenizer file")):
            if not path.is_file():
                raise FileNotFoundError(f"{what} {path} not found; regenerate the repository")
        self.labels = [line for line in labels_path.read_text(encoding="utf-8").splitlines() if line]
        self.view = TokenizerView.of(
            Tokenizer.from_file(str(tokenizer_path)), int(params.get("unk_id", "-1"))
        )
        self.strategy = check_strategy(params.get("aggregation_strategy", "simple"))
        self.ignore = [label for label in params.get("ignore_labels", "O").split(",") if label]
        self.logits_name = params.get("logits_name", "logits")
        self.max_chars = int(params.get("max_length", "512")) * CHARS_PER_TOKEN

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        responses = []
        for request in requests:
            try:
                rows = self._entities(request)
            except (AggregationError, ValueError) as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            encoded = np.array(
                [json.dumps(row, ensure_ascii=False).encode("utf-8") for row in rows], dtype=np.object_
            )
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(ENTITIES_OUTPUT, encoded.reshape(-1, 1))])
            )
        return responses

    def _input(self, request: pb_utils.InferenceRequest, name: str) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise ValueError(f"request has no '{name}' input")
        return tensor.as_numpy()

    def _strategies(self, request: pb_utils.InferenceRequest, rows: int) -> list[str]:
        tensor = pb_utils.get_input_tensor_by_name(request, AGGREGATION_INPUT)
        if tensor is None:
            return [self.strategy] * rows
        values = [_decode(v, 64) for v in tensor.as_numpy().reshape(-1)]
        if len(values) not in (1, rows):
            raise ValueError(f"'{AGGREGATION_INPUT}' has {len(values)} values for {rows} texts")
        return [check_strategy(v) if v.strip() else self.strategy for v in values * (rows // len(values))]

    def _entities(self, request: pb_utils.InferenceRequest) -> list[list[dict]]:
        texts = [_decode(v, self.max_chars) for v in self._input(request, TEXT_INPUT).reshape(-1)]
        ids, offsets, special = (self._input(request, name) for name in TOKEN_INPUTS)
        logits = self._input(request, self.logits_name)
        if logits.ndim != 3 or logits.shape[-1] != len(self.labels) or logits.shape[:2] != ids.shape[:2]:
            raise ValueError(
                f"expected '{self.logits_name}' shaped [{len(texts)}, {ids.shape[-1]}, {len(self.labels)}], "
                f"got {list(logits.shape)}"
            )
        strategies = self._strategies(request, len(texts))
        return [
            aggregate(
                texts[i],
                ids[i],
                offsets[i],
                special[i],
                logits[i],
                self.labels,
                strategies[i],
                self.view,
                self.ignore,
            )
            for i in range(len(texts))
        ]

    def finalize(self) -> None:
        self.view = None


def _decode(value: object, max_chars: int) -> str:
    """As the tokenizer model decodes TEXT: UTF-8 with replacement, cut to max_chars."""
    if isinstance(value, bytes):
        return value[: max_chars * 4].decode("utf-8", errors="replace")[:max_chars]
    return str(value)[:max_chars]
