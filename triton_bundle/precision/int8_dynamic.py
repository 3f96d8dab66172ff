"""CPU INT8 for the local target: onnxruntime dynamic quantization.

Weights are INT8 ahead of time; activations are quantized per batch at run time, which the CPU
kernels (MatMulInteger / DynamicQuantizeLinear) make fast. This is an onnxruntime format, NOT a
TensorRT one: it is the local / CPU serving variant, gated like the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

from triton_bundle.precision.quiet import quiet_quantizer

BACKEND = "onnxruntime.quantization.quantize_dynamic"
OP_TYPES = ["MatMul", "Gemm"]


def quantize_dynamic_cpu(src: Path, dst: Path, nodes_to_exclude: Sequence[str] = ()) -> None:
    """Write a dynamically quantized INT8 copy of `src` (per-channel INT8 weights on MatMul / Gemm)."""
    with quiet_quantizer():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=OP_TYPES,
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(nodes_to_exclude),
        )
