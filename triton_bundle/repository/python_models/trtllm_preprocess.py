"""Triton Python-backend preprocessing for the TensorRT-LLM route: prompt text in, engine inputs out.

Shipped by triton-bundle and copied to `<name>_preprocessing/1/model.py`; the tensor names are those of
the TensorRT-LLM `inflight_batcher_llm` preprocessing model, so the ensemble wires it the same way.
Settings come from the config's parameters:
  tokenizer_file   tokenizer.json beside model.py (the checkpoint's fast tokenizer)
  end_id, pad_id   the ids the engine stops on / pads with
  max_input_len    the engine's prompt limit (trtllm-build --max_input_len)
  max_new_tokens   the largest max_tokens a request may ask for

A bad request (empty prompt, prompt past max_input_len, max_tokens out of range) gets its own error
response; the rest of the batch is served.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


def _strings(request, name: str) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return []
    return [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        for v in tensor.as_numpy().reshape(-1)
    ]


def stop_words_ids(tokenizer: Tokenizer, words: list[str]) -> np.ndarray:
    """TensorRT-LLM's stop-word layout: row 0 the concatenated ids, row 1 each word's end offset (-1 pad)."""
    ids: list[int] = []
    offsets: list[int] = []
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False).ids
        if encoded:
            ids += encoded
            offsets.append(len(ids))
    width = max(1, len(ids))
    out = np.full((2, width), -1, dtype=np.int32)
    out[0, : len(ids)] = ids if ids else 0
    out[1, : len(offsets)] = offsets
    return out


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        path = Path(args["model_repository"]) / args["model_version"] / params["tokenizer_file"]
        self.tokenizer = Tokenizer.from_file(str(path))
        self.end_id = int(params["end_id"])
        self.pad_id = int(params["pad_id"])
        self.max_input_len = int(params["max_input_len"])
        self.max_new_tokens = int(params["max_new_tokens"])

    def _one(self, request) -> pb_utils.InferenceResponse:
        prompts = _strings(request, "QUERY")
        lengths = pb_utils.get_input_tensor_by_name(request, "REQUEST_OUTPUT_LEN").as_numpy().reshape(-1)
        if not prompts or any(not p.strip() for p in prompts):
            raise ValueError("text_input must be a non-empty prompt")
        if any(not 0 < int(n) <= self.max_new_tokens for n in lengths):
            raise ValueError(f"max_tokens must be in 1..{self.max_new_tokens}, got {lengths.tolist()}")
        encoded = [e.ids for e in self.tokenizer.encode_batch(prompts)]
        longest = max(len(ids) for ids in encoded)
        if longest > self.max_input_len:
            raise ValueError(
                f"the prompt is {longest} tokens; the engine accepts at most {self.max_input_len}"
            )
        batch = len(encoded)
        input_ids = np.full((batch, longest), self.pad_id, dtype=np.int32)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = ids
        stops = stop_words_ids(self.tokenizer, _strings(request, "STOP_WORDS_DICT"))
        column = lambda value: np.full((batch, 1), value, dtype=np.int32)  # noqa: E731
        tensors = {
            "INPUT_ID": input_ids,
            "REQUEST_INPUT_LEN": np.array([[len(ids)] for ids in encoded], dtype=np.int32),
            "REQUEST_OUTPUT_LEN": lengths.astype(np.int32).reshape(batch, 1),
            "STOP_WORDS_IDS": np.repeat(stops[None], batch, axis=0),
            "OUT_END_ID": column(self.end_id),
            "OUT_PAD_ID": column(self.pad_id),
        }
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in tensors.items()])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except Exception as exc:  # this request only; the batch goes on
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
