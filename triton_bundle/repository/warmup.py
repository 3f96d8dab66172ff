"""model_warmup entries with realistic inputs: real held-out text, real token ids, at real and maximal shapes.

Triton reads warm-up data from `<model>/warmup/<file>` as raw row-major bytes for ONE batch element
(strings: 4-byte little-endian length, then the bytes) and repeats it batch_size times.
"""

from __future__ import annotations

import struct
from collections.abc import MutableMapping, Sequence
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository.tensors import TensorInfo, numpy_dtype

WARMUP_DIR = "warmup"


def string_bytes(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<I", len(data)) + data


def add_text_warmup(
    config: mc.ModelConfig,
    files: MutableMapping[str, bytes | str | Path],
    input_name: str,
    text: str,
    batch_sizes: Sequence[int],
) -> None:
    """Warm the tokenizer with a real sentence at each batch size."""
    file_name = "text"
    files[f"{WARMUP_DIR}/{file_name}"] = string_bytes(text)
    for batch in sorted(set(batch_sizes)):
        sample = config.model_warmup.add(name=f"text_batch_{batch}", batch_size=batch)
        entry = sample.inputs[input_name]
        entry.data_type = mc.TYPE_STRING
        entry.dims.append(1)
        entry.input_data_file = file_name


def add_token_warmup(
    config: mc.ModelConfig,
    files: MutableMapping[str, bytes | str | Path],
    inputs: Sequence[TensorInfo],
    samples: Sequence[tuple[str, int, dict[str, np.ndarray]]],
) -> None:
    """Warm the tensor model with real token rows: (label, batch size, {input: 1-D row}) per sample."""
    for label, batch, rows in samples:
        sample = config.model_warmup.add(name=f"{label}_batch_{batch}", batch_size=batch)
        for tensor in inputs:
            row = np.ascontiguousarray(rows[tensor.name], dtype=numpy_dtype(tensor.data_type))
            file_name = f"{tensor.name}_{label}"
            files[f"{WARMUP_DIR}/{file_name}"] = row.tobytes()
            entry = sample.inputs[tensor.name]
            entry.data_type = tensor.data_type
            entry.dims.extend(list(row.shape))
            entry.input_data_file = file_name


def add_zero_warmup(config: mc.ModelConfig, inputs: Sequence[tuple[str, int, list[int]]]) -> None:
    """Numeric-only steps (postprocess): zeros exercise the same code path as real logits."""
    sample = config.model_warmup.add(name="zeros_batch_1", batch_size=1)
    for name, data_type, dims in inputs:
        entry = sample.inputs[name]
        entry.data_type = data_type
        entry.dims.extend(dims)
        entry.zero_data = True
