"""Triton Python-backend postprocess for classifiers: logits in, label names + probabilities out.

Shipped by triton-bundle and copied to `<model>/1/model.py`. Parameters:
  labels_file   label names, one per line in class order (relative to the model directory)
  input_name    the logits tensor
  top_k         how many labels to return, best first

Outputs LABELS (strings), SCORES (their probabilities) and PROBABILITIES (all classes, in label order).
All requests of a Triton batch go through one vectorised softmax.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

LABELS_OUTPUT = "LABELS"
SCORES_OUTPUT = "SCORES"
PROBABILITIES_OUTPUT = "PROBABILITIES"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        labels_path = Path(args["model_repository"]) / params.get("labels_file", "labels.txt")
        if not labels_path.is_file():
            raise FileNotFoundError(
                f"labels file {labels_path} not found: expected one label per line, written by the "
                "repository generator; regenerate the repository"
            )
        labels = [line for line in labels_path.read_text(encoding="utf-8").splitlines() if line]
        self.labels = np.array([label.encode("utf-8") for label in labels], dtype=np.object_)
        self.input_name = params.get("input_name", "logits")
        declared = {item["name"]: item.get("dims", []) for item in config.get("input", [])}
        classes = [int(d) for d in declared.get(self.input_name, [])][-1:]
        if classes and classes[0] != len(labels):
            raise ValueError(
                f"{labels_path} has {len(labels)} labels but config.pbtxt declares '{self.input_name}' with "
                f"{classes[0]} classes; regenerate the repository from the model it serves"
            )
        self.top_k = min(int(params.get("top_k", "1")), len(labels))

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        logits, sizes, errors = [], [], {}
        for index, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            array = None if tensor is None else tensor.as_numpy()
            if array is None or array.ndim != 2 or array.shape[1] != len(self.labels):
                errors[index] = (
                    f"expected '{self.input_name}' shaped [batch, {len(self.labels)}], "
                    f"got {None if array is None else list(array.shape)}"
                )
                sizes.append(0)
                continue
            logits.append(array.astype(np.float32, copy=False))
            sizes.append(array.shape[0])

        probabilities = np.zeros((0, len(self.labels)), dtype=np.float32)
        if logits:
            stacked = np.concatenate(logits, axis=0)
            shifted = np.exp(stacked - stacked.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, : self.top_k]
        scores = np.take_along_axis(probabilities, order, axis=1)

        responses, start = [], 0
        for index, size in enumerate(sizes):
            if index in errors:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[index])))
                continue
            rows = slice(start, start + size)
            start += size
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor(LABELS_OUTPUT, self.labels[order[rows]]),
                        pb_utils.Tensor(SCORES_OUTPUT, np.ascontiguousarray(scores[rows], dtype=np.float32)),
                        pb_utils.Tensor(PROBABILITIES_OUTPUT, np.ascontiguousarray(probabilities[rows])),
                    ]
                )
            )
        return responses
