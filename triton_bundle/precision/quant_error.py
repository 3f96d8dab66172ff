"""How badly each layer's inputs quantize, measured on real data in one FP32 pass.

For every tensor a Q/DQ model quantizes, the FP32 model's value on the evaluation inputs is
round-tripped through that tensor's own scale and zero-point, and compared with itself: the
signal-to-quantization-noise ratio (SQNR, dB; onnxruntime's qdq_loss_debug formula). Weights are
compared with onnxruntime's weight matching. Measuring each tensor on FP32 inputs isolates its own
error from the errors upstream, which is what a ranking of layers needs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization.qdq_loss_debug import (
    compute_signal_to_quantization_noice_ratio as sqnr,
)
from onnxruntime.quantization.qdq_loss_debug import (
    create_weight_matching,
)
from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX

from triton_bundle.precision.evaluate import session
from triton_bundle.precision.text_inputs import Feeds

_INT_RANGES = {np.int8: (-128, 127), np.uint8: (0, 255), np.int16: (-32768, 32767), np.uint16: (0, 65535)}


def _activation_quant_params(qdq: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per quantized activation (the QuantizeLinear input): its (scale, zero_point)."""
    inits = {init.name: numpy_helper.to_array(init) for init in qdq.graph.initializer}
    params = {}
    for node in qdq.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            params[node.input[0]] = (inits[node.input[1]], inits[node.input[2]])
    return params


def _consumers(qdq: onnx.ModelProto) -> dict[str, list[str]]:
    """Quantized tensor (activation or weight) -> the names of the compute nodes that read it via DQ."""
    q_source = {n.output[0]: n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    dq_source = {
        n.output[0]: q_source.get(n.input[0], n.input[0].removesuffix(TENSOR_NAME_QUANT_SUFFIX))
        for n in qdq.graph.node
        if n.op_type == "DequantizeLinear"
    }
    readers: dict[str, list[str]] = {}
    for node in qdq.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for name in node.input:
            if name in dq_source:
                readers.setdefault(dq_source[name], []).append(node.name)
    return readers


def _round_trip(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    low, high = _INT_RANGES[zero_point.dtype.type]
    zp = zero_point.astype(np.float32)
    scale = np.where(scale == 0, np.finfo(np.float32).tiny, scale)  # a constant-zero tensor's range
    q = np.clip(np.rint(x / scale) + zp, low, high)
    return ((q - zp) * scale).astype(np.float32)


def _fp32_values(
    float_model: Path, names: Sequence[str], batches: Sequence[Feeds]
) -> dict[str, list[np.ndarray]]:
    """The FP32 model's values of the named tensors on `batches` (one pass, tensors flattened)."""
    model = onnx.load(str(float_model))
    graph_outputs = {o.name for o in model.graph.output}
    produced = {out for node in model.graph.node for out in node.output}
    extra = [name for name in names if name in produced and name not in graph_outputs]
    # An output without a declared shape is fine for onnxruntime; Q/DQ only ever reads float32 here.
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in extra
    )
    fetch = [n for n in names if n in produced or n in graph_outputs]
    inputs = [n for n in names if n not in fetch and n in {i.name for i in model.graph.input}]
    values: dict[str, list[np.ndarray]] = {name: [] for name in [*fetch, *inputs]}
    with tempfile.TemporaryDirectory(prefix="tb-sqnr-") as tmp:
        path = Path(tmp) / "float_with_activations.onnx"
        onnx.save(model, str(path))
        sess = session(path)
        for feeds in batches:
            results = sess.run(fetch, dict(feeds)) if fetch else []
            for name, value in [*zip(fetch, results, strict=True), *((n, feeds[n]) for n in inputs)]:
                values[name].append(np.asarray(value, dtype=np.float32).reshape(-1))
    return values


def activation_sqnr(float_model: Path, qdq_model: Path, batches: Sequence[Feeds]) -> dict[str, float]:
    """SQNR (dB) of each activation the Q/DQ model quantizes, on FP32 values for `batches`."""
    params = _activation_quant_params(onnx.load(str(qdq_model), load_external_data=False))
    out = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for name, values in _fp32_values(float_model, list(params), batches).items():
            scale, zero_point = params[name]
            out[name] = sqnr(values, [_round_trip(v, scale, zero_point) for v in values])
    return out


def dynamic_activation_sqnr(
    float_model: Path, nodes: Sequence[str], batches: Sequence[Feeds]
) -> dict[str, float]:
    """SQNR (dB) of the float inputs of `nodes` under dynamic quantization: UINT8, each batch's own
    min / max (what onnxruntime's DynamicQuantizeLinear does at run time)."""
    model = onnx.load(str(float_model), load_external_data=False)
    constants = {init.name for init in model.graph.initializer}
    wanted = set(nodes)
    names = sorted(
        {
            i
            for node in model.graph.node
            if node.name in wanted
            for i in node.input
            if i and i not in constants
        }
    )
    out = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for name, values in _fp32_values(float_model, names, batches).items():
            rounded = []
            for v in values:
                low, high = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
                scale = np.float32((high - low) / 255 or 1.0)
                zero_point = np.uint8(np.clip(np.rint(-low / scale), 0, 255))
                rounded.append(_round_trip(v, scale, zero_point))
            out[name] = sqnr(values, rounded)
    return out


def weight_sqnr(float_model: Path, qdq_model: Path) -> dict[str, float]:
    """SQNR (dB) of each quantized weight against its FP32 original (onnxruntime's weight matching)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        matches = create_weight_matching(str(float_model), str(qdq_model))
        # onnxruntime's compute_weight_error fails on 0-d constants, which quantize-all also quantizes.
        return {
            name: sqnr(np.atleast_1d(m["float"]).reshape(-1), np.atleast_1d(m["dequantized"]).reshape(-1))
            for name, m in matches.items()
        }


def _by_layer(
    tensor_sqnr: Mapping[str, float], readers: Mapping[str, Sequence[str]], layer_of_node: Mapping[str, str]
) -> dict[str, float]:
    """A layer's score: the lowest SQNR among the quantized tensors its nodes read."""
    scores: dict[str, float] = {}
    for tensor, value in tensor_sqnr.items():
        for node in readers.get(tensor, ()):
            layer = layer_of_node.get(node)
            if layer is not None and np.isfinite(value):
                scores[layer] = min(scores.get(layer, np.inf), float(value))
    return scores


def static_layer_sqnr(
    float_model: Path, qdq_model: Path, batches: Sequence[Feeds], layer_of_node: Mapping[str, str]
) -> dict[str, float]:
    """Per layer, the lowest SQNR of its Q/DQ'd activations and weights (lower = more sensitive)."""
    readers = _consumers(onnx.load(str(qdq_model), load_external_data=False))
    tensors = activation_sqnr(float_model, qdq_model, batches) | weight_sqnr(float_model, qdq_model)
    return _by_layer(tensors, readers, layer_of_node)


def dynamic_layer_sqnr(
    float_model: Path, batches: Sequence[Feeds], layer_of_node: Mapping[str, str]
) -> dict[str, float]:
    """Per layer, the lowest SQNR of its activations under dynamic quantization."""
    model = onnx.load(str(float_model), load_external_data=False)
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.name in layer_of_node:
            for name in node.input:
                readers.setdefault(name, []).append(node.name)
    tensors = dynamic_activation_sqnr(float_model, list(layer_of_node), batches)
    return _by_layer(tensors, readers, layer_of_node)
