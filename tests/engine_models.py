"""ONNX variants of the demo model for the engine tests: FP32 from the export stage, FP16 and INT8 Q/DQ
made here the way the precision stage makes them (that stage is tested on its own).

Each maker writes once per session directory and reuses the file afterwards, so several test modules
share one set of models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from triton_bundle.manifest import Manifest, StageRecord

# Kept in FP32 in the FP16 graph: reductions and exponentials overflow or lose too much in half.
FP16_BLOCKED_OPS = ["LayerNormalization", "Softmax", "Pow", "ReduceMean", "Sqrt", "Erf"]


def fp16_onnx(fp32: Path, out: Path) -> Path:
    if out.is_file():
        return out
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True, op_block_list=FP16_BLOCKED_OPS)
    onnx.save(model, str(out))
    return out


def tokenized(checkpoint: Path, texts: list[str], max_length: int = 128) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def int8_qdq_onnx(fp32: Path, out: Path, calibration: dict[str, np.ndarray]) -> Path:
    """Static INT8, QDQ format, symmetric, per-channel weights, calibrated on real sentences.

    Each layer's `output/dense` MatMul stays in float: quantizing those too ruins MiniLM (embedding
    cosine 0.82 against 0.987 without them, measured on this model).
    """
    if out.is_file():
        return out
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(fp32), load_external_data=False).graph
    keep_float = [n.name for n in graph.node if n.op_type == "MatMul" and "output/dense" in n.name]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._rows = iter(
                [
                    {k: v[i : i + 8] for k, v in calibration.items()}
                    for i in range(0, len(calibration["input_ids"]), 8)
                ]
            )

        def get_next(self):
            return next(self._rows, None)

    quantize_static(
        str(fp32),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=keep_float,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return out


def int8_dynamic_onnx(fp32: Path, out: Path) -> Path:
    """ONNX Runtime's dynamic INT8 (MatMulInteger): a CPU variant TensorRT cannot import."""
    if out.is_file():
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    return out


def demo_variants(demo_workdir: Path, texts: list[str], models_dir: Path) -> dict[str, Path]:
    """fp32 (the demo's export), fp16 and int8 Q/DQ; made once per session directory."""
    models_dir.mkdir(parents=True, exist_ok=True)
    export = Manifest.load(demo_workdir, "minilm-intent").require("export", "the demo_workdir fixture")
    fp32 = export.artifact("onnx")
    calibration = tokenized(export.artifact("checkpoint"), texts[:32])
    return {
        "fp32": fp32,
        "fp16": fp16_onnx(fp32, models_dir / "fp16.onnx"),
        "int8": int8_qdq_onnx(fp32, models_dir / "int8.onnx", calibration),
    }


def engine_workdir(demo_workdir: Path, variants: dict[str, Path], where: Path) -> Path:
    """A workdir of its own whose manifest holds the demo's export record plus a precision record for
    the FP16 / INT8 graphs, so engine tests never write into the shared demo workdir."""
    demo = Manifest.load(demo_workdir, "minilm-intent")
    manifest = Manifest(model=demo.model)
    manifest.record(demo.require("export", "the demo_workdir fixture").model_copy(deep=True))
    manifest.record(
        StageRecord(stage="precision", artifacts={k: v for k, v in variants.items() if k != "fp32"})
    )
    manifest.save(where)
    return where
