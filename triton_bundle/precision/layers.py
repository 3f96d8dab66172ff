"""Group quantizable graph nodes into layers a person recognises.

A "layer" is the module scope an exporter writes into node names
(`/model/bert/encoder/layer.0/output/dense/MatMul` -> `/model/bert/encoder/layer.0/output/dense`),
or the `namespace` metadata the dynamo exporter records. Mixed precision keeps whole layers in float,
and the report names them the way the model's code does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx


def quantizable_op_types(op_types: Iterable[str] | None) -> set[str]:
    """The op types a Q/DQ build touches: the given ones, or all onnxruntime can quantize (None)."""
    if op_types is not None:
        return set(op_types)
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry)


def layer_of(node: onnx.NodeProto) -> str:
    """The module scope of a node: dynamo's namespace metadata, else the name without its last part."""
    for prop in node.metadata_props:
        if prop.key == "namespace" and prop.value:
            # "layer.0: BertLayer/attention: BertAttention/..." -> keep the attribute path only
            return "/".join(part.split(":")[0].strip() for part in prop.value.split("/"))
    if "/" in node.name.strip("/"):
        return node.name.rsplit("/", 1)[0]
    return node.name


def group_layers(model_path: Path, op_types: Iterable[str] | None) -> dict[str, list[str]]:
    """Quantizable nodes grouped by layer, in graph order: {layer: [node names]}."""
    wanted = quantizable_op_types(op_types)
    model = onnx.load(str(model_path), load_external_data=False)
    layers: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type in wanted and node.name:
            layers.setdefault(layer_of(node), []).append(node.name)
    return layers


def weight_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Bytes of each node's initializer inputs (FP32 weights), by node name."""
    sizes = {
        init.name: int(np.prod(init.dims)) * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        for init in model.graph.initializer
    }
    return {node.name: sum(sizes.get(i, 0) for i in node.input) for node in model.graph.node}
