"""Precision variants: one name per concept, used by spec, precision, engine and repository.

`fp32` is the export itself (the reference every gate compares against); the precision stage makes
the others. TensorRT builds fp32 / fp16 / int8 (explicit Q/DQ); `int8-dynamic` (MatMulInteger) is an
onnxruntime-only format.
"""

from __future__ import annotations

from typing import Literal, get_args

Variant = Literal["fp32", "fp16", "int8", "int8-dynamic"]
PrecisionVariant = Literal["fp16", "int8", "int8-dynamic"]  # what the precision stage makes
EngineVariant = Literal["fp32", "fp16", "int8"]  # what TensorRT builds an engine from

REFERENCE: Variant = "fp32"
ALL_VARIANTS: tuple[Variant, ...] = get_args(Variant)
PRECISION_VARIANTS: tuple[PrecisionVariant, ...] = get_args(PrecisionVariant)
ENGINE_VARIANTS: tuple[EngineVariant, ...] = get_args(EngineVariant)
