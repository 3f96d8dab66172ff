"""Triton Python-backend postprocessing for the TensorRT-LLM route: token ids in, text out.

Shipped by triton-bundle and copied to `<name>_postprocessing/1/model.py`; tensor names follow the
TensorRT-LLM `inflight_batcher_llm` postprocessing model. TOKENS_BATCH is [batch, beams, tokens] and
SEQUENCE_LENGTH [batch, beams]; each beam's first SEQUENCE_LENGTH ids are decoded. When streaming, every
response of the engine carries only its new tokens, so each becomes one `text_output` chunk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        path = Path(args["model_repository"]) / args["model_version"] / params["tokenizer_file"]
        self.tokenizer = Tokenizer.from_file(str(path))
        self.skip_special = params.get("skip_special_tokens", "true") == "true"

    def _decode(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        texts = [
            [
                self.tokenizer.decode(beam[: int(n)].tolist(), skip_special_tokens=self.skip_special)
                for beam, n in zip(row, row_lengths, strict=True)
            ]
            for row, row_lengths in zip(tokens, lengths, strict=True)
        ]
        return np.array([[t.encode("utf-8") for t in row] for row in texts], dtype=object)

    def execute(self, requests):
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
            output = pb_utils.Tensor("OUTPUT", self._decode(tokens, lengths))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
