"""Triton Python-backend image preprocessing: encoded image bytes in, normalised pixel tensor out.

Shipped by triton-bundle and copied to `<model>/1/model.py`. Parameters:
  height, width   the model's input size
  mean, std       per-channel normalisation (comma-separated, in 0..1 units)
  rescale         multiply pixels by this before normalising (1/255 for 8-bit images)
  output_name     the model's pixel input (pixel_values)
  dtype           float32 or float16

Each image is decoded (Pillow), converted to RGB, resized (bilinear) and normalised; all images of the
Triton batch are stacked and normalised in one numpy pass. An undecodable image fails only its request.
"""

from __future__ import annotations

import io
import json

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image

IMAGE_INPUT = "IMAGE"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.size = (int(params.get("width", "224")), int(params.get("height", "224")))
        self.mean = np.array(
            [float(v) for v in params.get("mean", "0.485,0.456,0.406").split(",")], np.float32
        )
        self.std = np.array([float(v) for v in params.get("std", "0.229,0.224,0.225").split(",")], np.float32)
        self.rescale = float(params.get("rescale", str(1 / 255)))
        self.output_name = params.get("output_name", "pixel_values")
        self.dtype = np.dtype(params.get("dtype", "float32"))

    def _decode(self, request: pb_utils.InferenceRequest) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT)
        if tensor is None:
            raise ValueError(f"request has no '{IMAGE_INPUT}' input")
        images = []
        for blob in tensor.as_numpy().reshape(-1):
            data = blob if isinstance(blob, bytes) else bytes(blob)
            try:
                with Image.open(io.BytesIO(data)) as image:
                    images.append(np.asarray(image.convert("RGB").resize(self.size, Image.BILINEAR)))
            except Exception as exc:
                raise ValueError(f"could not decode an image ({len(data)} bytes): {exc}") from None
        return np.stack(images)

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        decoded: list[np.ndarray | str] = []
        for request in requests:
            try:
                decoded.append(self._decode(request))
            except ValueError as exc:
                decoded.append(str(exc))
        good = [d for d in decoded if not isinstance(d, str)]
        pixels = None
        if good:
            stacked = np.concatenate(good).astype(np.float32) * self.rescale  # [n, H, W, 3]
            pixels = ((stacked - self.mean) / self.std).transpose(0, 3, 1, 2).astype(self.dtype)
        responses, start = [], 0
        for item in decoded:
            if isinstance(item, str):
                # INVALID_ARG reaches the client as 400 / INVALID_ARGUMENT: its image is bad, not the server.
                error = pb_utils.TritonError(item, pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            part = np.ascontiguousarray(pixels[start : start + len(item)])
            start += len(item)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, part)]))
        return responses
