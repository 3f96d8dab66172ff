"""Typed model metadata, and the input check that runs before anything is sent.

The server would reject a wrong name, dtype or shape too, but only after a round trip and with a
message about one tensor at a time; checking here names every problem and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from triton_bundle.client.errors import InvalidInputError
from triton_bundle.repository.contract import INPUT_IDS

_BYTES = "BYTES"
# Triton datatype -> numpy dtype the client sends (BYTES goes as an object array of bytes).
_NUMPY_FOR: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    _BYTES: np.object_,
}


class TensorMetadata(BaseModel):
    """One input or output as the server describes it; shape includes the batch dim (-1) when the
    model batches, and -1 marks any dynamic dim."""

    name: str
    datatype: str
    shape: list[int]
    optional: bool = False


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str = ""
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    max_batch_size: int = Field(0, description="from the model config; 0 means the model does not batch")
    pad_values: dict[str, Any] = Field(
        default_factory=dict,
        description="pad value per output, where the config says (a tokenizer's pad_id for input_ids); "
        "chunks of a split request are padded to one width with it",
    )

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> TensorMetadata:
        return _find(self.inputs, name, self.name, "input")

    def output(self, name: str) -> TensorMetadata:
        return _find(self.outputs, name, self.name, "output")

    def has_output(self, name: str) -> bool:
        return name in self.output_names

    @classmethod
    def from_server(cls, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelMetadata:
        """Combine the metadata and config answers (HTTP or gRPC JSON alike)."""
        optional = {item.get("name"): bool(item.get("optional", False)) for item in config.get("input", [])}
        inputs = [
            TensorMetadata(**_tensor(item), optional=optional.get(item["name"], False))
            for item in metadata.get("inputs", [])
        ]
        outputs = [TensorMetadata(**_tensor(item)) for item in metadata.get("outputs", [])]
        return cls(
            name=metadata["name"],
            versions=[str(v) for v in metadata.get("versions", [])],
            platform=metadata.get("platform", ""),
            inputs=inputs,
            outputs=outputs,
            max_batch_size=int(config.get("max_batch_size", 0)),
            pad_values=_pad_values(config, [t.name for t in outputs]),
        )


def _pad_values(config: Mapping[str, Any], outputs: list[str]) -> dict[str, Any]:
    """Pad values the config declares: the bundle's tokenizer model pads input_ids with its `pad_id`
    parameter (1 for RoBERTa's byte-level BPE, 0 for BERT's WordPiece)."""
    parameters = config.get("parameters") or {}
    raw = parameters.get("pad_id") or {}
    value = raw.get("string_value", raw.get("stringValue")) if isinstance(raw, Mapping) else None
    if value is None or INPUT_IDS not in outputs:
        return {}
    try:
        return {INPUT_IDS: int(value)}
    except ValueError:
        return {}


def _tensor(item: Mapping[str, Any]) -> dict[str, Any]:
    # gRPC's JSON renders int64 dims as strings.
    return {
        "name": item["name"],
        "datatype": item["datatype"],
        "shape": [int(d) for d in item.get("shape", [])],
    }


def _find(tensors: list[TensorMetadata], name: str, model: str, kind: str) -> TensorMetadata:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    names = ", ".join(t.name for t in tensors) or "none"
    raise InvalidInputError(f"model '{model}' has no {kind} '{name}'; its {kind}s are: {names}")


def triton_datatype(array: np.ndarray) -> str:
    """The Triton datatype an array would be sent as."""
    if array.dtype.kind in "OSU":
        return _BYTES
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(array.dtype) or f"unsupported ({array.dtype})"


def as_bytes_array(array: np.ndarray) -> np.ndarray:
    """str / bytes arrays -> object arrays of UTF-8 bytes, the form tritonclient serialises."""
    if array.dtype.kind == "U" or (array.dtype.kind == "O" and any(isinstance(v, str) for v in array.flat)):
        return np.vectorize(lambda v: v.encode("utf-8") if isinstance(v, str) else v, otypes=[object])(array)
    if array.dtype.kind == "S":
        return array.astype(object)
    return array


def _shape_text(shape: list[int] | tuple[int, ...]) -> str:
    return "[" + ", ".join("-1" if d < 0 else str(d) for d in shape) + "]"


def validate_inputs(
    metadata: ModelMetadata, inputs: Mapping[str, np.ndarray], *, split_batches: bool = True
) -> int:
    """Check names, dtypes and shapes against the model; return the batch size (0 for a model that
    does not batch). Raises InvalidInputError listing every problem found.

    With `split_batches`, a batch larger than max_batch_size is allowed (the client splits it).
    """
    model = metadata.name
    problems: list[str] = []
    expected = {t.name: t for t in metadata.inputs}
    missing = [n for n, t in expected.items() if n not in inputs and not t.optional]
    unknown = [n for n in inputs if n not in expected]
    if missing:
        problems.append(f"missing input(s) {', '.join(missing)}")
    if unknown:
        problems.append(
            f"unknown input(s) {', '.join(unknown)} (the model takes: {', '.join(expected) or 'nothing'})"
        )

    batch_sizes: dict[str, int] = {}
    for name, array in inputs.items():
        tensor = expected.get(name)
        if tensor is None:
            continue
        if not isinstance(array, np.ndarray):
            problems.append(f"input '{name}' must be a numpy array, got {type(array).__name__}")
            continue
        got_type = triton_datatype(array)
        if got_type != tensor.datatype:
            hint = (
                "pass str/bytes values (an object array)"
                if tensor.datatype == _BYTES
                else f"convert with .astype(np.{np.dtype(_NUMPY_FOR[tensor.datatype]).name})"
                if tensor.datatype in _NUMPY_FOR
                else ""
            )
            problems.append(
                f"input '{name}' expects {tensor.datatype}, got {got_type} (numpy {array.dtype})"
                + (f"; {hint}" if hint else "")
            )
        want = tensor.shape
        if array.ndim != len(want):
            problems.append(
                f"input '{name}' expects {len(want)} dims {_shape_text(want)}"
                + (" (first is the batch)" if metadata.batched else "")
                + f", got {array.ndim} dims {list(array.shape)}"
            )
            continue
        start = 1 if metadata.batched else 0
        for axis in range(start, len(want)):
            if want[axis] >= 0 and array.shape[axis] != want[axis]:
                problems.append(
                    f"input '{name}' dim {axis} must be {want[axis]} (shape {_shape_text(want)}), "
                    f"got {array.shape[axis]} (shape {list(array.shape)})"
                )
        if metadata.batched:
            batch_sizes[name] = array.shape[0]

    batch = 0
    if metadata.batched and batch_sizes:
        sizes = set(batch_sizes.values())
        if len(sizes) > 1:
            listed = ", ".join(f"{n}={b}" for n, b in batch_sizes.items())
            problems.append(f"inputs disagree on the batch size (dim 0): {listed}")
        batch = max(sizes)
        if batch == 0:
            problems.append("empty batch: dim 0 of every input is 0")
        elif batch > metadata.max_batch_size and not split_batches:
            problems.append(
                f"batch of {batch} exceeds the model's max_batch_size {metadata.max_batch_size}; "
                "enable client-side batching or send smaller batches"
            )
    if problems:
        raise InvalidInputError(
            f"inputs for model '{model}' do not match its metadata: " + "; ".join(problems)
        )
    return batch
