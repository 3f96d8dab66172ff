"""Tensor signatures of ONNX graphs and Triton configs, in one comparable form.

Dims keep the batch dim: an int is fixed, -1 is dynamic (ONNX dim_param or unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from tritonclient.grpc import model_config_pb2 as mc

# ONNX TensorProto element type -> Triton DataType
_ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: mc.TYPE_FP32,
    onnx.TensorProto.FLOAT16: mc.TYPE_FP16,
    onnx.TensorProto.BFLOAT16: mc.TYPE_BF16,
    onnx.TensorProto.DOUBLE: mc.TYPE_FP64,
    onnx.TensorProto.INT64: mc.TYPE_INT64,
    onnx.TensorProto.INT32: mc.TYPE_INT32,
    onnx.TensorProto.INT16: mc.TYPE_INT16,
    onnx.TensorProto.INT8: mc.TYPE_INT8,
    onnx.TensorProto.UINT8: mc.TYPE_UINT8,
    onnx.TensorProto.BOOL: mc.TYPE_BOOL,
    onnx.TensorProto.STRING: mc.TYPE_STRING,
}

_TRITON_TO_NUMPY = {
    mc.TYPE_FP32: np.float32,
    mc.TYPE_FP16: np.float16,
    mc.TYPE_FP64: np.float64,
    mc.TYPE_INT64: np.int64,
    mc.TYPE_INT32: np.int32,
    mc.TYPE_INT16: np.int16,
    mc.TYPE_INT8: np.int8,
    mc.TYPE_UINT8: np.uint8,
    mc.TYPE_BOOL: np.bool_,
}

# TensorRT DataType names (as the engine manifest's input_types records them) -> Triton DataType
TRT_TO_TRITON = {
    "FLOAT": mc.TYPE_FP32,
    "HALF": mc.TYPE_FP16,
    "BF16": mc.TYPE_BF16,
    "INT64": mc.TYPE_INT64,
    "INT32": mc.TYPE_INT32,
    "INT8": mc.TYPE_INT8,
    "UINT8": mc.TYPE_UINT8,
    "BOOL": mc.TYPE_BOOL,
}


def type_name(data_type: int) -> str:
    return mc.DataType.Name(data_type)


def numpy_dtype(data_type: int) -> np.dtype:
    return np.dtype(_TRITON_TO_NUMPY[data_type])


@dataclass(frozen=True)
class TensorInfo:
    name: str
    data_type: int  # a model_config_pb2 DataType
    dims: tuple[int, ...]  # including the batch dim when the graph has one

    @property
    def type_name(self) -> str:
        return type_name(self.data_type)


@dataclass(frozen=True)
class GraphSignature:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)

    def same_io(self, other: GraphSignature) -> bool:
        return self == other


def _info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor_type = value.type.tensor_type
    dims = tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim
    )
    return TensorInfo(value.name, _ONNX_TO_TRITON.get(tensor_type.elem_type, mc.TYPE_INVALID), dims)


def onnx_signature(path: Path) -> GraphSignature:
    """Inputs (initializers excluded) and outputs of an ONNX file, without loading external weights."""
    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    return GraphSignature(
        inputs=tuple(_info(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_info(v) for v in model.graph.output),
    )


def config_dims(config: mc.ModelConfig, dims: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """A config tensor's dims with the implicit batch dim made explicit (-1) when max_batch_size > 0."""
    return ((-1,) if config.max_batch_size > 0 else ()) + tuple(int(d) for d in dims)


def external_data_files(path: Path) -> list[str]:
    """Files an ONNX model keeps its weights in beside itself (models over 2 GB), relative to its dir."""
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(entry.value for entry in tensor.external_data if entry.key == "location")
    return sorted(locations)
