"""INT8 with explicit Q/DQ nodes from post-training calibration (the TensorRT INT8 format).

TensorRT's requirements shape every option: INT8 activations and weights, symmetric (zero-point 0),
per-channel weights, biases left in float. By default only GEMM inputs get Q/DQ (what TensorRT runs
in INT8); `quantize_all` puts Q/DQ on every op onnxruntime can quantize, a setting the gate exists
to catch. Calibration runs once; its ranges are cached so the sensitivity search can re-quantize
with other layers excluded without calibrating again.
Backend: onnxruntime.quantization.quantize_static, QuantFormat.QDQ. On a CPU, a Q/DQ model is not
faster than FP32: it is meant for TensorRT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from pydantic import BaseModel

from triton_bundle.precision.calibration import METHODS, CalibrationSet
from triton_bundle.precision.quiet import quiet_quantizer

BACKEND = "onnxruntime.quantization.quantize_static (QuantFormat.QDQ)"


class QdqSettings(BaseModel):
    """What a Q/DQ build is made of; recorded in the gate report."""

    method: str = "minmax"
    # None: every op onnxruntime can quantize
    op_types: list[str] | None = ["MatMul", "Gemm", "Conv", "ConvTranspose"]
    percentile: float = 99.999
    per_channel: bool = True
    symmetric: bool = True
    quantize_bias: bool = False

    @property
    def quantize_all(self) -> bool:
        return self.op_types is None

    def extra_options(self) -> dict[str, object]:
        options: dict[str, object] = {
            "ActivationSymmetric": self.symmetric,
            "WeightSymmetric": self.symmetric,
            "QuantizeBias": self.quantize_bias,
        }
        if self.quantize_all:
            options["ForceQuantizeNoInputCheck"] = True
        else:
            # TensorRT places Q/DQ on GEMM inputs; quantizing their outputs only adds rounding.
            options["OpTypesToExcludeOutputQuantization"] = list(self.op_types or [])
        if self.method == "percentile":
            options["CalibPercentile"] = self.percentile
        if self.method in ("entropy", "percentile"):
            # The histogram calibrators stack each tensor's values over the batches they are given,
            # which fails for batches of different lengths: feed them one batch at a time.
            options["CalibStridedMinMax"] = 1
        return options


def quantize_qdq(
    src: Path,
    dst: Path,
    settings: QdqSettings,
    cache: Path,
    calibration: CalibrationSet | None = None,
    nodes_to_exclude: Sequence[str] = (),
) -> None:
    """Write a Q/DQ INT8 copy of `src`; calibrate on `calibration` unless `cache` already holds ranges."""
    if calibration is None and not Path(cache).is_file():
        raise ValueError(f"no calibration data and no calibration cache at {cache}")
    with quiet_quantizer():
        quantize_static(
            str(src),
            str(dst),
            calibration_data_reader=calibration.reader() if calibration is not None else None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=settings.op_types,
            per_channel=settings.per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(nodes_to_exclude),
            calibrate_method=METHODS[settings.method],
            extra_options=settings.extra_options(),
            calibration_cache_path=str(cache),
        )
    if not settings.quantize_all:
        quantized_readers_only(dst, set(settings.op_types or []), set(nodes_to_exclude))


def quantized_readers_only(path: Path, op_types: set[str], kept_float: set[str]) -> int:
    """Rewire nodes that are not quantized (residual Adds, Shape, layers kept in float) from a
    dequantized activation back to the FP32 original; returns how many inputs changed.

    onnxruntime's QDQ quantizer points every reader of a quantized tensor at its DequantizeLinear,
    so a LayerNorm output quantized for the next MatMul would also be rounded to INT8 on the
    residual path. TensorRT's placement (and NVIDIA ModelOpt's) quantizes GEMM inputs only.
    """
    model = onnx.load(str(path))
    q_input = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    original = {
        n.output[0]: q_input[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in q_input
    }
    changed = 0
    for node in model.graph.node:
        quantized = node.op_type in op_types and node.name not in kept_float
        if quantized or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            if name in original:
                node.input[index] = original[name]
                changed += 1
    if changed:
        onnx.save(model, str(path))
    return changed
