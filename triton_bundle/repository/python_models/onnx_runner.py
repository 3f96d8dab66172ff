"""Triton Python-backend model that runs an ONNX graph with onnxruntime (the local target's tensor model).

Shipped by triton-bundle and copied to `<model>/<version>/model.py` beside `model.onnx`. Parameters:
  model_file        the ONNX file in the version directory
  intra_op_threads  onnxruntime intra-op threads (0: onnxruntime decides)
  inter_op_threads  onnxruntime inter-op threads
  allow_spinning    "1" lets idle onnxruntime threads spin (lower latency when the cores are free)
  ragged_inputs     JSON {input name: pad value} for inputs whose dim 1 varies between requests
  ragged_outputs    comma-separated outputs whose dim 1 follows the ragged inputs' (cut back per request)

The inputs set allow_ragged_batch, so Triton's dynamic batcher hands over requests of different
sequence lengths together. They are re-padded to the batch's longest sequence and run in ONE
session.run per batch; outputs are split back per request. If a batch fails, each request runs alone so
one bad request never fails the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_threads", "1"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads would steal the cores the tokenizer and postprocess stubs need.
        options.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "0"))
        self.session = ort.InferenceSession(
            str(version_dir / params.get("model_file", "model.onnx")),
            options,
            providers=["CPUExecutionProvider"],
        )
        self.inputs = {i.name: _ORT_TO_NUMPY.get(i.type, np.float32) for i in self.session.get_inputs()}
        self.outputs = [output["name"] for output in config["output"]]
        self.ragged_inputs: dict[str, int] = json.loads(params.get("ragged_inputs", "{}"))
        self.ragged_outputs = {name for name in params.get("ragged_outputs", "").split(",") if name}

    def _feeds(self, request: pb_utils.InferenceRequest) -> dict[str, np.ndarray]:
        feeds = {}
        for name, dtype in self.inputs.items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"request has no '{name}' input")
            feeds[name] = tensor.as_numpy().astype(dtype, copy=False)
        sizes = {array.shape[0] for array in feeds.values()}
        if len(sizes) != 1:
            raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}")
        return feeds

    def _run(self, feeds_list: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """One session.run over the concatenated requests; outputs split back per request."""
        lengths = [self._length(feeds) for feeds in feeds_list]
        width = max(lengths)
        batch = {}
        for name in self.inputs:
            parts = [feeds[name] for feeds in feeds_list]
            if name in self.ragged_inputs:
                pad = self.ragged_inputs[name]
                parts = [
                    np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=pad)
                    if p.shape[1] < width
                    else p
                    for p in parts
                ]
            batch[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        results = self.session.run(self.outputs, batch)
        sizes = [next(iter(feeds.values())).shape[0] for feeds in feeds_list]
        bounds = np.cumsum([0, *sizes])
        per_request = []
        for index, length in enumerate(lengths):
            outs = []
            for name, result in zip(self.outputs, results, strict=True):
                part = result[bounds[index] : bounds[index + 1]]
                if name in self.ragged_outputs:
                    part = part[:, :length]
                outs.append(np.ascontiguousarray(part))
            per_request.append(outs)
        return per_request

    def _length(self, feeds: dict[str, np.ndarray]) -> int:
        ragged = [feeds[name].shape[1] for name in self.ragged_inputs if name in feeds]
        return max(ragged, default=0)

    def _respond(self, outs: list[np.ndarray]) -> pb_utils.InferenceResponse:
        return pb_utils.InferenceResponse(
            [pb_utils.Tensor(name, out) for name, out in zip(self.outputs, outs, strict=True)]
        )

    @staticmethod
    def _error(message: str) -> pb_utils.InferenceResponse:
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        responses: list[pb_utils.InferenceResponse | None] = [None] * len(requests)
        good: list[tuple[int, dict[str, np.ndarray]]] = []
        for index, request in enumerate(requests):
            try:
                good.append((index, self._feeds(request)))
            except ValueError as exc:
                responses[index] = self._error(str(exc))
        if good:
            try:
                for (index, _), outs in zip(good, self._run([feeds for _, feeds in good]), strict=True):
                    responses[index] = self._respond(outs)
            except Exception:
                # Isolate the request that broke the batch: the others still get their answers.
                for index, feeds in good:
                    try:
                        responses[index] = self._respond(self._run([feeds])[0])
                    except Exception as exc:
                        responses[index] = self._error(f"onnxruntime failed on this request: {exc}")
        return responses

    def finalize(self) -> None:
        self.session = None
