"""Triton Python-backend model: seeds (and class labels) in, generator latents out.

Shipped by triton-bundle and copied to `<model>/1/model.py`. Parameters:
  latent_shape   one image's latent, comma-separated (e.g. "32")
  num_classes    class labels the generator knows (0: unconditional)

The latent of each seed is `numpy.random.Generator(numpy.random.PCG64(seed)).standard_normal(latent_shape,
dtype=float32)`, the generator `triton_bundle.imagegen.seeds` documents (this file cannot import the
package; a test pins the two equal). A missing class label defaults to seed % num_classes. A negative
seed or an unknown class label fails only its own request, with INVALID_ARG (HTTP 400).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

SEED, CLASS_LABEL, LATENT, CLASS_OUT = "seed", "class_label", "latent", "class_id"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.shape = tuple(int(v) for v in params["latent_shape"].split(","))
        self.classes = int(params.get("num_classes", "0"))

    def _one(self, request: pb_utils.InferenceRequest) -> tuple[np.ndarray, np.ndarray]:
        seeds = pb_utils.get_input_tensor_by_name(request, SEED).as_numpy().reshape(-1).astype(np.int64)
        if (seeds < 0).any():
            raise ValueError(f"seed must be a non-negative integer, got {int(seeds[seeds < 0][0])}")
        given = pb_utils.get_input_tensor_by_name(request, CLASS_LABEL)
        if given is None:
            labels = seeds % max(self.classes, 1)
        else:
            labels = given.as_numpy().reshape(-1).astype(np.int64)
            bad = labels[(labels < 0) | (labels >= self.classes)]
            if len(bad):
                raise ValueError(
                    f"unknown class_label {int(bad[0])}: expected 0..{self.classes - 1}"
                    if self.classes
                    else "this generator is unconditional: leave out class_label"
                )
        latents = [
            np.random.Generator(np.random.PCG64(int(s))).standard_normal(self.shape, dtype=np.float32)
            for s in seeds
        ]
        return np.stack(latents), labels.reshape(-1, 1)

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        responses = []
        for request in requests:
            try:
                latent, labels = self._one(request)
            except ValueError as exc:
                # INVALID_ARG reaches the client as 400 / INVALID_ARGUMENT: its request is wrong, not the server.
                error = pb_utils.TritonError(f"invalid request: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            outputs = [pb_utils.Tensor(LATENT, latent), pb_utils.Tensor(CLASS_OUT, labels)]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
