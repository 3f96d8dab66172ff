"""Keep onnxruntime.quantization's per-call chatter out of the user's terminal."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """The quantizer logs a pre-processing hint per call (we skip ORT's fusions on purpose: they
    would put onnxruntime-only ops into a graph meant for TensorRT)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # A constant-zero tensor has a zero scale; the quantizer's division by it is harmless.
        # The histogram calibrators also print a line per batch.
        with np.errstate(divide="ignore", invalid="ignore"), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
