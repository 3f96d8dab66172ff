"""Images from a served image-generation / diffusion ensemble, over HTTP or gRPC (tritonclient).

from triton_bundle.client.images import ImageGenerator
images = ImageGenerator("grpc://127.0.0.1:8201").generate_images("digits-gan", seeds=[1, 2], class_labels=[7, 7])
images[0].save("seven.png")

One request carries every seed asked for (one row each); the same seed (and label, and steps) always
gives the same image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from triton_bundle.client.connection import Endpoint, parse_endpoint
from triton_bundle.client.errors import InvalidInputError, ServerRejectedError, ServerUnavailableError
from triton_bundle.imagegen import contract
from triton_bundle.imagegen.png import decode_png, to_pil
from triton_bundle.imagegen.seeds import SeedError, check_seed


@dataclass(frozen=True)
class GeneratedImages:
    png: list[bytes]  # one PNG per seed, in the order asked
    pixels: np.ndarray  # uint8 [B, H, W, C], decoded from the PNGs
    seconds: float  # the request, end to end

    def pil(self) -> list:
        return [to_pil(p) for p in self.pixels]


def _column(values: Sequence[int] | int | None, count: int, what: str) -> list[int] | None:
    if values is None:
        return None
    values = [values] * count if isinstance(values, int) else list(values)
    if len(values) != count:
        raise InvalidInputError(f"{what}: expected one per seed ({count}), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise InvalidInputError(f"{what} must be integers, got {v!r}")
    return [int(v) for v in values]


def request_arrays(
    seeds: Sequence[int], class_labels: Sequence[int] | int | None = None, steps: int | None = None
) -> dict[str, np.ndarray]:
    """The ensemble's input tensors ([B, 1] each) for these seeds; checked before anything is sent."""
    if not seeds:
        raise InvalidInputError("no seeds: expected at least one seed (one image per seed)")
    try:
        checked = [check_seed(s) for s in seeds]
    except SeedError as exc:
        raise InvalidInputError(str(exc)) from None
    arrays = {contract.SEED: np.array(checked, dtype=np.int64).reshape(-1, 1)}
    labels = _column(class_labels, len(checked), "class_labels")
    if labels is not None:
        arrays[contract.CLASS_LABEL] = np.array(labels, dtype=np.int64).reshape(-1, 1)
    if steps is not None:
        arrays[contract.STEPS] = np.array(_column(steps, len(checked), "steps"), dtype=np.int32).reshape(
            -1, 1
        )
    return arrays


class ImageGenerator:
    """Blocking client; `url` is `http://host:port` or `grpc://host:port`."""

    def __init__(self, url: str = "127.0.0.1:8000", protocol: str | None = None, timeout_s: float = 120.0):
        self.endpoint: Endpoint = parse_endpoint(url, protocol)
        self.timeout_s = timeout_s
        self._client = None

    def _module(self):
        if self.endpoint.protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
        return module

    def _connect(self):
        if self._client is None:
            module = self._module()
            kwargs = {"network_timeout": self.timeout_s} if self.endpoint.protocol == "http" else {}
            self._client = module.InferenceServerClient(
                self.endpoint.address, ssl=self.endpoint.ssl, **kwargs
            )
        return self._client

    def generate_arrays(
        self,
        model: str,
        seeds: Sequence[int],
        class_labels: Sequence[int] | int | None = None,
        steps: int | None = None,
    ) -> GeneratedImages:
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        module = self._module()
        inputs = []
        for name, array in request_arrays(seeds, class_labels, steps).items():
            tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(contract.IMAGE)]
        started = time.perf_counter()
        try:
            result = self._connect().infer(model, inputs, outputs=outputs)
        except InferenceServerException as exc:
            raise _error(exc) from None
        seconds = time.perf_counter() - started
        png = [bytes(v) for v in result.as_numpy(contract.IMAGE).reshape(-1)]
        return GeneratedImages(png=png, pixels=np.stack([decode_png(p) for p in png]), seconds=seconds)

    def generate_images(
        self,
        model: str,
        seeds: Sequence[int],
        class_labels: Sequence[int] | int | None = None,
        steps: int | None = None,
    ) -> list:
        """One PIL image per seed (mode L for one channel, RGB for three)."""
        return self.generate_arrays(model, seeds, class_labels, steps).pil()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _error(exc) -> Exception:
    message = exc.message() if hasattr(exc, "message") else str(exc)
    status = str(exc.status() or "")
    if "400" in status or "INVALID_ARG" in status or "unexpected" in message or "invalid" in message.lower():
        return InvalidInputError(f"the server refused the request: {message}")
    if "UNAVAILABLE" in status or "connect" in message.lower():
        return ServerUnavailableError(f"image generation failed: {message}")
    return ServerRejectedError(f"image generation failed: {message}", status or None)
