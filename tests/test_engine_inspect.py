"""Per-layer precision summaries: engine-inspector JSON (TensorRT 10 and 11 layouts) and, with
TensorRT for RTX, the parsed network of small graphs in FP32, FP16 and explicit INT8 Q/DQ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from triton_bundle.engine.inspect import canonical_precision, summarize_inspector_json
from triton_bundle.engine.manifest import ProfileDims
from triton_bundle.engine.trt_build import BuildOptions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Row major linear FP32", "FP32"),
        ("Channel major FP16 format where channel % 8 == 0", "FP16"),
        ("Row major Int8 format", "INT8"),
        ("Half", "FP16"),
        ("Float", "FP32"),
        ("BFloat16", "BF16"),
        ("Row major linear Int64 format", "INT64"),
        ("Unknown format", "unknown"),
    ],
)
def test_canonical_precision(text: str, expected: str) -> None:
    assert canonical_precision(text) == expected


def _tensor(name: str, precision: str, trt11: bool) -> dict:
    if trt11:  # TensorRT 11 splits the TensorRT 10 "Format/Datatype" string
        return {
            "Name": name,
            "DataType": precision,
            "Format": "Row major linear (kLINEAR)",
            "Dimensions": [8, 64],
        }
    return {"Name": name, "Format/Datatype": f"Row major linear {precision} format", "Dimensions": [8, 64]}


@pytest.mark.parametrize("trt11", [False, True], ids=["tensorrt10", "tensorrt11"])
def test_inspector_json_counts_layers_by_first_input_precision(trt11: bool) -> None:
    int8, fp16, fp32 = ("Int8", "Half", "Float") if trt11 else ("Int8", "FP16", "FP32")
    layers = [
        {
            "Name": "q",
            "LayerType": "Scale",
            "Inputs": [_tensor("x", fp32, trt11)],
            "Outputs": [_tensor("xq", int8, trt11)],
        },
        {"Name": "mm0", "LayerType": "MatrixMultiply", "Inputs": [_tensor("xq", int8, trt11)], "Outputs": []},
        {"Name": "mm1", "LayerType": "gemm", "Inputs": [_tensor("h", fp16, trt11)], "Outputs": []},
        {"Name": "ln", "LayerType": "Normalization", "Inputs": [_tensor("h2", fp32, trt11)], "Outputs": []},
        {"Name": "const", "LayerType": "Constant", "Inputs": [], "Outputs": [_tensor("w", fp16, trt11)]},
    ]
    key = "I/O Tensors" if trt11 else "Bindings"
    summary = summarize_inspector_json(json.dumps({"Layers": layers, key: []}))
    assert summary.source == "engine_inspector"
    assert summary.layers == 5
    assert summary.by_precision == {"FP32": 2, "INT8": 1, "FP16": 2}
    assert summary.compute_layers == {"INT8": 1, "FP16": 1}


def test_inspector_json_with_layer_names_only_is_unknown_not_wrong() -> None:
    summary = summarize_inspector_json(json.dumps({"Layers": ["a", "b"], "Bindings": ["x", "y"]}))
    assert summary.by_precision == {"unknown": 2}
    assert summary.compute_layers == {}


# ---------------------------------------------------------------- with TensorRT for RTX (no GPU needed)


def _matmul_graph(path: Path, kind: str) -> Path:
    """x[batch, 16] @ W[16, 8] in FP32, FP16 (casts around it) or INT8 Q/DQ (symmetric)."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 8)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    inits, nodes = [], []
    if kind == "fp32":
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"))
    elif kind == "fp16":
        inits.append(numpy_helper.from_array(weight.astype(np.float16), "w"))
        nodes += [
            helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16, name="to16"),
            helper.make_node("MatMul", ["x16", "w"], ["y16"], name="mm"),
            helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT, name="to32"),
        ]
    else:
        scale = np.abs(weight).max(axis=0) / 127
        inits += [
            numpy_helper.from_array(np.round(weight / scale).astype(np.int8), "wq"),
            numpy_helper.from_array(scale.astype(np.float32), "ws"),
            numpy_helper.from_array(np.array(0.05, dtype=np.float32), "xs"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "xs"], ["xq"], name="qx"),
            helper.make_node("DequantizeLinear", ["xq", "xs"], ["xd"], name="dqx"),
            helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], axis=1, name="dqw"),
            helper.make_node("MatMul", ["xd", "wd"], ["y"], name="mm"),
        ]
    graph = helper.make_graph(nodes, kind, [x], [y], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


PROFILE = ProfileDims(shapes={"x": ([1, 16], [4, 16], [8, 16])})


@pytest.mark.parametrize(("kind", "expected"), [("fp32", "FP32"), ("fp16", "FP16"), ("int8", "INT8")])
def test_network_summary_sees_the_precision_the_graph_asks_for(
    tmp_path: Path, kind: str, expected: str
) -> None:
    pytest.importorskip("tensorrt_rtx", reason="pip install -e '.[trt-rtx]'")
    from triton_bundle.engine.aot_check import aot_check

    result, plan = aot_check(_matmul_graph(tmp_path / f"{kind}.onnx", kind), PROFILE, BuildOptions(), kind)
    assert result.passed, result.error
    assert plan is not None and len(plan) == result.plan_bytes
    summary = result.layer_precisions
    assert summary is not None and summary.source == "network_definition"
    assert summary.compute_layers == {expected: 1}
    assert result.input_types == {"x": "FLOAT"}


def test_refused_nodes_are_each_named_with_op_type_and_reason(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt_rtx", reason="pip install -e '.[trt-rtx]'")
    from triton_bundle.engine.aot_check import aot_check

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("FancyOp", ["a"], ["b"], name="custom_op", domain="com.example"),
        helper.make_node("Det", ["b"], ["c"], name="determinant"),
        helper.make_node("Identity", ["c"], ["y"], name="out"),
    ]
    graph = helper.make_graph(nodes, "bad", [x], [y])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    result, plan = aot_check(path, PROFILE, BuildOptions(), "fp32")
    assert not result.passed and plan is None
    refused = {(n.name, n.op_type) for n in result.unsupported_nodes}
    assert refused == {("custom_op", "FancyOp"), ("determinant", "Det")}
    assert [n.index for n in result.unsupported_nodes] == [1, 2]
    assert "custom_op" in result.error and "Det x1" in result.error
