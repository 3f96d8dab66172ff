"""Triton Python-backend model: generated float images in, PNG bytes (and uint8 pixels) out.

Shipped by triton-bundle and copied to `<model>/1/model.py`. Parameters:
  value_range   "low,high": the generator's output range, mapped to 0..255
  layout        NCHW or NHWC: the generator's output layout
  input_name    the float image tensor (the generator's output)

Pixels are rounded and clipped to uint8 and encoded losslessly (Pillow), so a client decoding the PNG gets
exactly IMAGE_ARRAY back. One Triton batch is scaled in one numpy pass.
"""

from __future__ import annotations

import io
import json

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image

IMAGE, IMAGE_ARRAY = "IMAGE", "IMAGE_ARRAY"


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.low, self.high = (float(v) for v in params.get("value_range", "-1,1").split(","))
        self.nchw = params.get("layout", "NCHW") == "NCHW"
        self.input_name = params.get("input_name", "image")

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        images = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        stacked = np.concatenate(images).astype(np.float32)
        scaled = np.clip(np.rint((stacked - self.low) / (self.high - self.low) * 255.0), 0, 255).astype(
            np.uint8
        )
        pixels = scaled.transpose(0, 2, 3, 1) if self.nchw else scaled
        responses, start = [], 0
        for image in images:
            part = np.ascontiguousarray(pixels[start : start + len(image)])
            start += len(image)
            png = np.array([_png(p) for p in part], dtype=np.object_).reshape(-1, 1)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(IMAGE, png), pb_utils.Tensor(IMAGE_ARRAY, part)])
            )
        return responses
