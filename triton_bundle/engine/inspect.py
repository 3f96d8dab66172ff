"""How many layers run in which precision: from the engine inspector, or from the parsed network.

The engine inspector (GPU builds) tells what TensorRT really chose after fusion. Without a GPU an
engine cannot be deserialised, so ahead-of-time checks summarise the strongly typed network instead:
the precisions the graph asks for, before fusion. Each layer counts once, by its first input's type
(the convention of NVIDIA's engine explorer); "compute" layers are the matrix multiplies and
convolutions, where the precision decides the speed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel

SummarySource = Literal["engine_inspector", "network_definition"]

_PRECISION = re.compile(
    r"\b(fp32|float|fp16|half|bfloat16|bf16|int8|fp8|int4|fp4|int32|int64|uint8|bool)\b", re.IGNORECASE
)
_CANONICAL = {"float": "FP32", "half": "FP16", "bfloat16": "BF16"}
_COMPUTE = re.compile(r"matrix.?multiply|matmul|gemm|convolution|fully.?connected", re.IGNORECASE)


class LayerPrecisionSummary(BaseModel):
    source: SummarySource
    layers: int
    by_precision: dict[str, int]
    compute_layers: dict[str, int]  # matrix multiplies / convolutions only

    def describe(self) -> str:
        compute = ", ".join(f"{k} {v}" for k, v in sorted(self.compute_layers.items())) or "none"
        return f"{self.layers} layers; matmul/conv layers by precision: {compute}"


def canonical_precision(text: str | None) -> str:
    """'Row major linear FP16 format' -> 'FP16', 'Half' -> 'FP16', 'Int8' -> 'INT8'; else 'unknown'."""
    match = _PRECISION.search(text or "")
    if match is None:
        return "unknown"
    word = match.group(1).lower()
    return _CANONICAL.get(word, word.upper())


def _tensor_precision(tensor: Any) -> str:
    if not isinstance(tensor, dict):
        return "unknown"
    # TensorRT 11 splits the TensorRT 10 "Format/Datatype" string into "Format" and "DataType".
    for key in ("DataType", "Format/Datatype", "Format"):
        if key in tensor:
            found = canonical_precision(str(tensor[key]))
            if found != "unknown":
                return found
    return "unknown"


def _layer_precision(layer: dict[str, Any]) -> str:
    for key in ("Inputs", "Outputs"):
        tensors = layer.get(key) or []
        if tensors:
            return _tensor_precision(tensors[0])
    return "unknown"


def _is_compute(*names: object) -> bool:
    return any(_COMPUTE.search(str(name)) for name in names if name)


def summarize_inspector_json(text: str) -> LayerPrecisionSummary:
    """Summarise `IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`.

    Needs an engine built with ProfilingVerbosity.DETAILED; with layer names only, every layer is
    counted as 'unknown'.
    """
    info = json.loads(text)
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    by_precision: Counter[str] = Counter()
    compute: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict):  # LAYER_NAMES_ONLY: plain strings
            by_precision["unknown"] += 1
            continue
        precision = _layer_precision(layer)
        by_precision[precision] += 1
        if _is_compute(layer.get("LayerType"), layer.get("ParameterType")):
            compute[precision] += 1
    return LayerPrecisionSummary(
        source="engine_inspector",
        layers=len(layers),
        by_precision=dict(by_precision),
        compute_layers=dict(compute),
    )


def summarize_network(trt: Any, network: Any) -> LayerPrecisionSummary:
    """Summarise a parsed, strongly typed INetworkDefinition (either TensorRT flavour's module).

    A matrix multiply fed by DequantizeLinear of an INT8 tensor counts as INT8: TensorRT fuses the
    Q/DQ pair into the multiply, which is how explicit quantization runs INT8 kernels.
    """
    producers: dict[str, Any] = {}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        for out in range(layer.num_outputs):
            producers[layer.get_output(out).name] = layer

    def type_name(dtype: Any) -> str:
        return canonical_precision(str(dtype).rsplit(".", 1)[-1])

    def effective(tensor: Any) -> str:
        producer = producers.get(tensor.name)
        if producer is not None and producer.type == trt.LayerType.DEQUANTIZE:
            return type_name(producer.get_input(0).dtype)
        return type_name(tensor.dtype)

    by_precision: Counter[str] = Counter()
    compute: Counter[str] = Counter()
    compute_types = {trt.LayerType.MATRIX_MULTIPLY, trt.LayerType.CONVOLUTION, trt.LayerType.DECONVOLUTION}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        first = next(
            (t for t in (layer.get_input(i) for i in range(layer.num_inputs)) if t is not None), None
        )
        if layer.type in compute_types and first is not None:
            precision = effective(first)
            compute[precision] += 1
        elif first is not None:
            precision = type_name(first.dtype)
        elif layer.num_outputs:
            precision = type_name(layer.get_output_type(0))
        else:
            precision = "unknown"
        by_precision[precision] += 1
    return LayerPrecisionSummary(
        source="network_definition",
        layers=network.num_layers,
        by_precision=dict(by_precision),
        compute_layers=dict(compute),
    )


def inspect_engine(trt: Any, engine: Any) -> LayerPrecisionSummary:
    """The per-layer precision summary of a deserialised ICudaEngine (GPU only)."""
    inspector = engine.create_engine_inspector()
    return summarize_inspector_json(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
