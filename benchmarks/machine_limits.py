"""How far a result is from the machine's limit: model matmul work per sequence over measured matmul speed.

Two measurements, both with onnxruntime's own kernels (the ones the model runs on):
- the box's matmul throughput: a 2048^3 FP32 MatMul and a uint8 x int8 MatMulInteger (the kernel dynamic
  INT8 uses), on all cores;
- each ONNX variant's matmul work at a given sequence length, counted from the shapes that actually
  reach every MatMul / Gemm / MatMulInteger / QLinearMatMul (the graph is run once with those inputs
  exposed as outputs), fitted exactly as a + b*L + c*L^2 (attention is quadratic in L, the rest linear).
The bound ignores everything that is not a matmul (softmax, layer norm, tokenization, HTTP), so the
fraction of the limit says how much of the time is spent elsewhere.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from benchmarks.results import Limit, MatmulRate

_INT8_OPS = {"MatMulInteger", "QLinearMatMul"}
_MATMUL_OPS = {"MatMul", "Gemm", "FusedMatMul", *_INT8_OPS}
_FIT_LENGTHS = (16, 64, 128)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --------------------------------------------------------------------------------------- matmul speed


def _matmul_graph(kind: str, n: int) -> bytes:
    if kind == "fp32":
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
        b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
    else:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])
        b = helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    graph = helper.make_graph([node], f"matmul_{kind}", [a, b], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def measure_matmul(kind: str, n: int = 2048, seconds: float = 1.5, threads: int | None = None) -> MatmulRate:
    """GFLOP/s (fp32) or GOP/s (int8) of one n^3 matmul, best and median over repeated runs."""
    threads = threads or cores()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(_matmul_graph(kind, n), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    if kind == "fp32":
        feeds = {"a": rng.standard_normal((n, n), np.float32), "b": rng.standard_normal((n, n), np.float32)}
    else:
        feeds = {
            "a": rng.integers(0, 255, (n, n), dtype=np.uint8),
            "b": rng.integers(-127, 127, (n, n), dtype=np.int8),
        }
    session.run(None, feeds)  # first run allocates and packs
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        t0 = time.perf_counter()
        session.run(None, feeds)
        rates.append(2.0 * n**3 / (time.perf_counter() - t0) / 1e9)
    return MatmulRate(
        kind=kind,  # type: ignore[arg-type]
        size=n,
        threads=threads,
        best_gops=round(max(rates), 1),
        median_gops=round(statistics.median(rates), 1),
        runs=len(rates),
    )


# --------------------------------------------------------------------------------------- model work


def _operands(node: onnx.NodeProto) -> tuple[str, str]:
    if node.op_type == "QLinearMatMul":
        return node.input[0], node.input[3]
    return node.input[0], node.input[1]


def _matmul_flops(node: onnx.NodeProto, a: Sequence[int], b: Sequence[int]) -> float:
    if node.op_type == "Gemm":
        attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
        n = b[0] if attrs.get("transB", 0) else b[1]
        return 2.0 * m * k * n
    if len(a) < 2 or len(b) < 2:
        return 2.0 * float(np.prod(a)) * (b[-1] if len(b) >= 2 else 1)
    batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    return 2.0 * float(np.prod(batch)) * a[-2] * a[-1] * b[-1]


@dataclass(frozen=True)
class MatmulWork:
    """Matmul work of one sequence as a + b*L + c*L^2, split into float and INT8 parts."""

    fp: tuple[float, float, float]
    int8: tuple[float, float, float]

    @staticmethod
    def _at(coeffs: tuple[float, float, float], length: float) -> float:
        a, b, c = coeffs
        return max(0.0, a + b * length + c * length * length)

    def fp_flops(self, length: float) -> float:
        return self._at(self.fp, length)

    def int8_ops(self, length: float) -> float:
        return self._at(self.int8, length)

    def seconds(self, length: float, fp_rate: float, int8_rate: float) -> float:
        """The time the matmuls of one sequence take at the measured peak rates (GFLOP/s, GOP/s)."""
        return self.fp_flops(length) / (fp_rate * 1e9) + self.int8_ops(length) / (int8_rate * 1e9)


def _exposed_session(model: onnx.ModelProto) -> tuple[ort.InferenceSession, list[onnx.NodeProto], dict]:
    """A session whose outputs are every matmul operand that is not a constant, with graph opts off."""
    constants = {init.name: list(init.dims) for init in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in _MATMUL_OPS]
    existing = {o.name for o in model.graph.output}
    for node in nodes:
        for name in _operands(node):
            if name not in constants and name not in existing:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                existing.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = cores()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, nodes, constants


def _dequantized(model: onnx.ModelProto) -> set[str]:
    return {out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output}


def matmul_work(onnx_path: Path, feeds_at: dict[int, dict[str, np.ndarray]]) -> MatmulWork:
    """Count the graph's matmul work for one sequence at each length in feeds_at (batch 1) and fit it."""
    model = onnx.load(str(onnx_path))
    dequantized = _dequantized(model)
    session, nodes, constants = _exposed_session(model)
    names = [o.name for o in session.get_outputs()]
    points: list[tuple[int, float, float]] = []
    for length, feeds in sorted(feeds_at.items()):
        shapes = {name: list(v.shape) for name, v in zip(names, session.run(names, feeds), strict=True)}
        shapes.update(constants)
        fp = int8 = 0.0
        for node in nodes:
            a_name, b_name = _operands(node)
            flops = _matmul_flops(node, shapes[a_name], shapes[b_name])
            quantized = node.op_type in _INT8_OPS or (a_name in dequantized and b_name in dequantized)
            if quantized:
                int8 += flops
            else:
                fp += flops
        points.append((length, fp, int8))
    lengths = np.array([p[0] for p in points], dtype=np.float64)
    design = np.stack([np.ones_like(lengths), lengths, lengths**2], axis=1)

    def fit(values: list[float]) -> tuple[float, float, float]:
        coeffs, *_ = np.linalg.lstsq(design, np.array(values), rcond=None)
        return float(coeffs[0]), float(coeffs[1]), float(coeffs[2])

    return MatmulWork(fp=fit([p[1] for p in points]), int8=fit([p[2] for p in points]))


def fit_lengths(max_length: int) -> tuple[int, ...]:
    """Three distinct lengths inside the model's range (three points fit a quadratic exactly)."""
    if max_length >= max(_FIT_LENGTHS):
        return _FIT_LENGTHS
    return (max(1, max_length // 4), max(2, max_length // 2), max_length)


def limit_for(
    work: MatmulWork,
    lengths: Sequence[int],
    measured_per_s: float,
    fp_rate: float,
    int8_rate: float,
    basis: str,
) -> Limit:
    """The sequences/s bound for sequences of these (padded) lengths, and how close the measurement came."""
    lengths = list(lengths) or [1]
    fp = sum(work.fp_flops(length) for length in lengths) / len(lengths) / 1e9
    int8 = sum(work.int8_ops(length) for length in lengths) / len(lengths) / 1e9
    limit = Limit(
        gflop_per_sequence=round(fp + int8, 4),
        fp_gflop_per_sequence=fp,
        int8_gop_per_sequence=int8,
        int8_share=round(int8 / (fp + int8), 3) if fp + int8 else 0.0,
        max_sequences_per_s=0.0,
        fraction_of_limit=0.0,
        basis=basis,
    )
    return rescored(limit, measured_per_s, fp_rate, int8_rate)


def rescored(limit: Limit, measured_per_s: float, fp_rate: float, int8_rate: float) -> Limit:
    """The same work against (better) matmul rates: seconds per sequence = fp / fp_rate + int8 / int8_rate."""
    seconds = limit.fp_gflop_per_sequence / fp_rate + limit.int8_gop_per_sequence / int8_rate
    bound = 1.0 / seconds if seconds > 0 else float("inf")
    return limit.model_copy(
        update={
            "max_sequences_per_s": round(bound, 1),
            "fraction_of_limit": round(measured_per_s / bound, 3) if bound else 0.0,
        }
    )
