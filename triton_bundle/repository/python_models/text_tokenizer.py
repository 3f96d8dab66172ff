"""Triton Python-backend tokenizer: raw UTF-8 text in, token id tensors out.

Shipped by triton-bundle and copied to `<model>/1/model.py`; settings come from the config's parameters:
  tokenizer_file  tokenizer.json in the version directory (the fast `tokenizers` library)
  max_length      truncate to this many tokens (the model's / engine profile's sequence maximum)
  min_length      never emit fewer columns than this (the profile minimum)
  padding         longest: pad each request to its own longest text (the runner re-pads a ragged batch)
                  bucket:  pad to the next multiple of bucket_size (equal shapes batch in ORT / TensorRT)
                  fixed:   pad to max_length (graphs with a fixed sequence dim)
  bucket_size     bucket width for padding=bucket
  pad_id          the tokenizer's padding token id
  outputs         comma-separated output names among input_ids, attention_mask, token_type_ids, and for
                  token classification offsets ([tokens, 2] character spans) and special_tokens_mask
                  (1 for special and padding positions), both int32
  dtype           int64 or int32 for the id tensors

One encode_batch over every text of every request in the Triton batch; the tokenizer is loaded once.
Bytes that are not valid UTF-8 are replaced (U+FFFD), never a crash; a malformed request gets its own
error response and the rest of the batch is served. An empty text is valid: it encodes to the special
tokens alone ([CLS] [SEP]).

Texts are cut to max_length * CHARS_PER_TOKEN characters before tokenizing: the tokenizer keeps only
max_length tokens anyway, and a 10 MB text would otherwise hold this model (and every request queued
behind it) for seconds. No real text needs more than CHARS_PER_TOKEN characters per token.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

TEXT_INPUT = "TEXT"
CHARS_PER_TOKEN = 100  # WordPiece turns a word longer than 100 characters into one [UNK]


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        tokenizer_path = version_dir / params.get("tokenizer_file", "tokenizer.json")
        if not tokenizer_path.is_file():
            raise FileNotFoundError(
                f"tokenizer file {tokenizer_path} not found: expected the tokenizer.json the repository "
                "generator writes beside model.py; regenerate the repository"
            )
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:
            raise ValueError(
                f"cannot load tokenizer {tokenizer_path} (corrupt or not a tokenizers JSON?): {exc}"
            ) from None
        self.max_length = int(params["max_length"])
        self.max_chars = self.max_length * CHARS_PER_TOKEN
        self.min_length = max(1, int(params.get("min_length", "1")))
        self.padding = params.get("padding", "longest")
        self.bucket = max(1, int(params.get("bucket_size", "16")))
        self.pad_id = int(params.get("pad_id", "0"))
        self.outputs = [name for name in params.get("outputs", "input_ids,attention_mask").split(",") if name]
        self.dtype = np.dtype(params.get("dtype", "int64"))
        # Truncation lives in the tokenizer (Rust); padding is ours because each request pads on its own.
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.tokenizer.no_padding()

    def _width(self, longest: int) -> int:
        if self.padding == "fixed":
            return self.max_length
        if self.padding == "bucket":
            longest = -(-longest // self.bucket) * self.bucket
        return min(self.max_length, max(self.min_length, longest))

    def _texts(self, request: pb_utils.InferenceRequest) -> list[str]:
        tensor = pb_utils.get_input_tensor_by_name(request, TEXT_INPUT)
        if tensor is None:
            raise ValueError(f"request has no '{TEXT_INPUT}' input")
        values = tensor.as_numpy()
        if values.ndim == 0 or values.size != values.shape[0]:
            raise ValueError(f"'{TEXT_INPUT}' must be shaped [batch, 1], got {list(values.shape)}")
        return [_decode(value, self.max_chars) for value in values.reshape(-1)]

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        texts: list[str] = []
        spans: list[tuple[int, int] | str] = []
        for request in requests:
            try:
                batch = self._texts(request)
            except ValueError as exc:
                spans.append(str(exc))
                continue
            spans.append((len(texts), len(texts) + len(batch)))
            texts.extend(batch)

        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True) if texts else []
        responses = []
        for span in spans:
            if isinstance(span, str):
                # INVALID_ARG reaches the client as 400 / INVALID_ARGUMENT: the request is wrong.
                error = pb_utils.TritonError(span, pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(pb_utils.InferenceResponse(self._tensors(encodings[span[0] : span[1]])))
        return responses

    def _tensors(self, encodings: list) -> list[pb_utils.Tensor]:
        width = self._width(max((len(e.ids) for e in encodings), default=1))
        arrays = {
            "input_ids": np.full((len(encodings), width), self.pad_id, dtype=self.dtype),
            "attention_mask": np.zeros((len(encodings), width), dtype=self.dtype),
            "token_type_ids": np.zeros((len(encodings), width), dtype=self.dtype),
        }
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            arrays["input_ids"][row, :n] = encoding.ids
            arrays["attention_mask"][row, :n] = encoding.attention_mask
            arrays["token_type_ids"][row, :n] = encoding.type_ids
        if "offsets" in self.outputs:
            arrays |= _spans(encodings, width)
        return [pb_utils.Tensor(name, arrays[name]) for name in self.outputs]

    def finalize(self) -> None:
        self.tokenizer = None


def _spans(encodings: list, width: int) -> dict[str, np.ndarray]:
    """Character offsets and the special-token mask per token; padding counts as special."""
    offsets = np.zeros((len(encodings), width, 2), dtype=np.int32)
    special = np.ones((len(encodings), width), dtype=np.int32)
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        if n:
            offsets[row, :n] = encoding.offsets
            special[row, :n] = encoding.special_tokens_mask
    return {"offsets": offsets, "special_tokens_mask": special}


def _decode(value: object, max_chars: int) -> str:
    """UTF-8 with replacement, cut to max_chars (bytes first: a character is at most 4 bytes)."""
    if isinstance(value, bytes):
        return value[: max_chars * 4].decode("utf-8", errors="replace")[:max_chars]
    return str(value)[:max_chars]
