"""FP16 by converting the ONNX graph, keeping numerically sensitive ops in FP32.

LayerNorm / Softmax / Pow / ReduceMean overflow or lose too much in FP16 (a known TensorRT pain),
and so does the pooling / normalisation at the end of an embedding model: those stay FP32. Graph
inputs and outputs keep their types, so clients and the Triton config do not change.
Converter: onnxruntime.transformers.float16 (ships with onnxruntime; no extra dependency).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
from pydantic import BaseModel

CONVERTER = "onnxruntime.transformers.float16.convert_float_to_float16"

# Ops whose work is a GEMM: walking back from an output stops at them (they are the model body).
_BODY_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Attention", "MultiHeadAttention"}


class Fp16Info(BaseModel):
    converter: str = CONVERTER
    fp32_op_types: list[str]
    fp32_tail_nodes: list[str]  # pooling / normalisation between the last GEMM and each output
    fp32_nodes: int  # all nodes left in FP32 (op types + tail)
    total_nodes: int


def output_tail(model: onnx.ModelProto) -> list[str]:
    """Nodes after the last GEMM-like op: those from which no GEMM is reachable (pooling, normalisation)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    feeds_body: dict[str, bool] = {}
    # ONNX graphs are topologically sorted: walking backwards sees every consumer before its producer.
    for node in reversed(model.graph.node):
        feeds_body[node.name] = any(
            c.op_type in _BODY_OPS or feeds_body.get(c.name, False)
            for out in node.output
            for c in consumers.get(out, [])
        )
    return [n.name for n in model.graph.node if n.op_type not in _BODY_OPS and not feeds_body[n.name]]


def convert_fp16(src: Path, dst: Path, fp32_op_types: Sequence[str]) -> Fp16Info:
    """Write an FP16 copy of `src` to `dst`; sensitive op types and the output tail stay FP32."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    tail = output_tail(model)
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(fp32_op_types))
    # The converter asks the node names to be unique and non-empty; exports normally satisfy both.
    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=block, node_block_list=tail, disable_shape_infer=False
    )
    onnx.save(converted, str(dst))
    kept = {n.name for n in model.graph.node if n.op_type in block} | set(tail)
    return Fp16Info(
        fp32_op_types=sorted(set(fp32_op_types)),
        fp32_tail_nodes=tail,
        fp32_nodes=len(kept),
        total_nodes=len(model.graph.node),
    )
