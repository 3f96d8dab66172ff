"""Triton Python-backend postprocess for embedding models: the model's output in, EMBEDDING out.

Shipped by triton-bundle and copied to `<model>/1/model.py`. Parameters:
  input_name   the model output: pooled [batch, hidden], or token states [batch, sequence, hidden]
  mask_name    attention mask used to mean-pool token states (only for 3-D inputs)
  normalize    "true": L2-normalise each embedding

All requests of a Triton batch are pooled and normalised in one vectorised pass when shapes allow.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

EMBEDDING_OUTPUT = "EMBEDDING"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.input_name = params.get("input_name", "embedding")
        self.mask_name = params.get("mask_name", "")
        self.normalize = params.get("normalize", "true") == "true"

    def _embed(self, request: pb_utils.InferenceRequest) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
        if tensor is None:
            raise ValueError(f"request has no '{self.input_name}' input")
        values = tensor.as_numpy().astype(np.float32, copy=False)
        if values.ndim == 3:
            mask_tensor = (
                pb_utils.get_input_tensor_by_name(request, self.mask_name) if self.mask_name else None
            )
            if mask_tensor is None:
                raise ValueError(
                    f"token states need the '{self.mask_name or 'attention_mask'}' input to pool"
                )
            mask = mask_tensor.as_numpy().astype(np.float32)[:, : values.shape[1], None]
            values = (values * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if values.ndim != 2:
            raise ValueError(f"expected '{self.input_name}' with 2 or 3 dims, got {list(values.shape)}")
        return values

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        responses = []
        for request in requests:
            try:
                values = self._embed(request)
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            if self.normalize:
                values = values / np.clip(np.linalg.norm(values, axis=1, keepdims=True), 1e-12, None)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(EMBEDDING_OUTPUT, np.ascontiguousarray(values))])
            )
        return responses
