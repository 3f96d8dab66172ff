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


def activation_sqnr(float_model: Path, qdq_model: Path, batches: Sequence[Feeds]) -> dict[str, float]:
    """SQNR (dB) of each activation the Q/DQ model quantizes, on FP32 values for `batches`."""
    qdq = onnx.load(str(qdq_model), load_external_data=False)
    params = _activation_quant_params(qdq)
    model = onnx.load(str(float_model))
    graph_outputs = {o.name for o in model.graph.output}
    wanted = [name for name in params if name not in graph_outputs]
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name for v in inferred.graph.value_info} | {i.name for i in model.graph.input}
    wanted = [name for name in wanted if name in known]
    # An output without a declared type or shape is fine for onnxruntime; float32 is what Q reads.
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in wanted
    )
    with tempfile.TemporaryDirectory(prefix="tb-sqnr-") as tmp:
        path = Path(tmp) / "float_with_activations.onnx"
        onnx.save(model, str(path))
        sess = session(path)
        collected: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        for feeds in batches:
            for name, value in zip(wanted, sess.run(wanted, dict(feeds)), strict=True):
                collected[name].append(np.asarray(value, dtype=np.float32).reshape(-1))
    out = {}
    for name, values in collected.items():
        scale, zero_point = params[name]
        out[name] = sqnr(values, [_round_trip(v, scale, zero_point) for v in values])
    return out


def weight_sqnr(float_model: Path, qdq_model: Path) -> dict[str, float]:
    """SQNR (dB) of each quantized weight against its FP32 original (onnxruntime's weight matching)."""
    matches = create_weight_matching(str(float_model), str(qdq_model))
    # onnxruntime's compute_weight_error fails on 0-d constants, which quantize-all also quantizes.
    return {
        name: sqnr(np.atleast_1d(m["float"]).reshape(-1), np.atleast_1d(m["dequantized"]).reshape(-1))
        for name, m in matches.items()
    }


def layer_sqnr(
    float_model: Path, qdq_model: Path, batches: Sequence[Feeds], layer_of_node: Mapping[str, str]
) -> dict[str, float]:
    """A layer's score: the lowest SQNR among the quantized tensors its nodes read."""
    qdq = onnx.load(str(qdq_model), load_external_data=False)
    readers = _consumers(qdq)
    tensors = activation_sqnr(float_model, qdq_model, batches) | weight_sqnr(float_model, qdq_model)
    scores: dict[str, float] = {}
    for tensor, value in tensors.items():
        for node in readers.get(tensor, ()):
            layer = layer_of_node.get(node)
            if layer is not None:
                scores[layer] = min(scores.get(layer, np.inf), float(value))
    return scores
