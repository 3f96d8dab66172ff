"""Triton Python-backend orchestration model for diffusion: seeds in, denoised images out (DDIM loop).

Shipped by triton-bundle and copied to `<model>/1/model.py`, with `ddim.py` (the numpy sampler, the
same file as triton_bundle/diffusion/ddim.py) and `ddim_schedule.json` (the trained noise schedule)
beside it. Parameters:
  unet_model       the UNet tensor model it calls through Triton (BLS) once per denoising step
  unet_max_batch   rows per UNet call, at most (the UNet model's max_batch_size)
  num_classes      class ids accepted: 0 .. num_classes - 1
  default_steps / min_steps / max_steps   the steps a request gets / may ask for
  latent_shape     JSON [C, H, W]: one image's noise, drawn from its seed with
                   numpy.random.Generator(numpy.random.PCG64(seed)).standard_normal (imagegen.seeds)

All requests of a Triton batch denoise together: one UNet call per step carries every row still
denoising (rows that asked for fewer steps drop out early; the UNet takes per-row timesteps). Several
instances run loops side by side, so their UNet calls meet and batch in the UNet's dynamic batcher.
A request with a bad seed, class or step count gets its own INVALID_ARG error; the others still run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

SEED, CLASS_LABEL, STEPS, IMAGE_OUT = "seed", "class_label", "steps", "image"
SAMPLE, TIMESTEP, CLASS_LABELS, NOISE = "sample", "timestep", "class_labels", "noise_pred"
MAX_SEED = 2**63 - 1


def _load_ddim(version_dir: Path):
    spec = importlib.util.spec_from_file_location("triton_bundle_ddim", version_dir / "ddim.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


class _Rows:
    """One request's rows: its seeds, classes and step counts (validated)."""

    def __init__(self, seeds: np.ndarray, classes: np.ndarray, steps: np.ndarray) -> None:
        self.seeds, self.classes, self.steps = seeds, classes, steps


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        ddim = _load_ddim(version_dir)
        self.sample = ddim.sample
        self.schedule = ddim.DDIMSchedule.read(version_dir / ddim.SCHEDULE_FILE)
        self.unet_model = params["unet_model"]
        self.unet_max_batch = int(params.get("unet_max_batch", "8"))
        self.num_classes = int(params["num_classes"])
        self.default_steps = int(params["default_steps"])
        self.min_steps, self.max_steps = int(params["min_steps"]), int(params["max_steps"])
        self.latent_shape = tuple(json.loads(params["latent_shape"]))

    def _rows(self, request) -> _Rows:
        seeds = pb_utils.get_input_tensor_by_name(request, SEED).as_numpy().reshape(-1).astype(np.int64)
        if (seeds < 0).any():
            raise ValueError(f"a seed must be an integer between 0 and {MAX_SEED}, got {seeds[seeds < 0][0]}")
        label = pb_utils.get_input_tensor_by_name(request, CLASS_LABEL)
        classes = seeds % self.num_classes if label is None else label.as_numpy().reshape(-1).astype(np.int64)
        bad = classes[(classes < 0) | (classes >= self.num_classes)]
        if bad.size:
            raise ValueError(
                f"unknown class label {bad[0]}: expected a class id from 0 to {self.num_classes - 1}"
            )
        asked = pb_utils.get_input_tensor_by_name(request, STEPS)
        steps = (
            np.full(len(seeds), self.default_steps, np.int64)
            if asked is None
            else asked.as_numpy().reshape(-1).astype(np.int64)
        )
        bad = steps[(steps < self.min_steps) | (steps > self.max_steps)]
        if bad.size:
            raise ValueError(f"steps {bad[0]} out of range: expected {self.min_steps} to {self.max_steps}")
        if not len(seeds) == len(classes) == len(steps):
            raise ValueError(
                f"seed, class_label and steps disagree on the batch size: {len(seeds)}, {len(classes)}, {len(steps)}"
            )
        return _Rows(seeds, classes, steps)

    def _unet(self, x: np.ndarray, t: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The UNet through Triton, in chunks of at most unet_max_batch rows."""
        out = []
        for start in range(0, len(x), self.unet_max_batch):
            rows = slice(start, start + self.unet_max_batch)
            request = pb_utils.InferenceRequest(
                model_name=self.unet_model,
                requested_output_names=[NOISE],
                inputs=[
                    pb_utils.Tensor(SAMPLE, np.ascontiguousarray(x[rows], dtype=np.float32)),
                    pb_utils.Tensor(TIMESTEP, np.ascontiguousarray(t[rows])),
                    pb_utils.Tensor(CLASS_LABELS, np.ascontiguousarray(labels[rows])),
                ],
            )
            response = request.exec()
            if response.has_error():
                raise RuntimeError(f"the UNet model '{self.unet_model}' failed: {response.error().message()}")
            out.append(pb_utils.get_output_tensor_by_name(response, NOISE).as_numpy())
        return np.concatenate(out, axis=0)

    def execute(self, requests):
        parsed, errors = [], {}
        for index, request in enumerate(requests):
            try:
                parsed.append((index, self._rows(request)))
            except ValueError as exc:  # the request is wrong (400 / INVALID_ARGUMENT), not the server
                errors[index] = (str(exc), pb_utils.TritonError.INVALID_ARG)
        images = np.zeros((0, *self.latent_shape), np.float32)
        if parsed:
            rows = [r for _, r in parsed]
            seeds = np.concatenate([r.seeds for r in rows])
            noise = np.stack(
                [
                    np.random.Generator(np.random.PCG64(int(s))).standard_normal(
                        self.latent_shape, dtype=np.float32
                    )
                    for s in seeds
                ]
            )
            try:
                images = self.sample(
                    self._unet,
                    self.schedule,
                    noise,
                    np.concatenate([r.classes for r in rows]),
                    np.concatenate([r.steps for r in rows]),
                )
            except RuntimeError as exc:
                errors.update({index: (str(exc), pb_utils.TritonError.INTERNAL) for index, _ in parsed})
        return self._responses(len(requests), parsed, errors, images)

    @staticmethod
    def _responses(count, parsed, errors, images):
        slices, start = {}, 0
        for index, rows in parsed:
            slices[index] = slice(start, start + len(rows.seeds))
            start += len(rows.seeds)
        responses = []
        for index in range(count):
            if index in errors:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(*errors[index])))
            else:
                responses.append(
                    pb_utils.InferenceResponse([pb_utils.Tensor(IMAGE_OUT, images[slices[index]])])
                )
        return responses
