"""Precision-stage parts on small real graphs and real onnxruntime: gate, metrics, search, FP16, SQNR."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from triton_bundle.labels import map_gold
from triton_bundle.precision.evaluate import EvalSet, VariantMetrics, compare_outputs
from triton_bundle.precision.fp16 import convert_fp16, output_tail
from triton_bundle.precision.gate import judge
from triton_bundle.precision.layers import group_layers, layer_of
from triton_bundle.precision.sensitivity import Trial, rank_layers, search
from triton_bundle.spec import AccuracyBudget

# --- gate ---------------------------------------------------------------------------------------


def _metrics(**fields) -> VariantMetrics:
    return VariantMetrics(examples=10, psnr_db=40.0, max_abs=0.1, **fields)


def test_gate_for_classifiers_checks_agreement_and_accuracy_drop() -> None:
    budget = AccuracyBudget(min_label_agreement=0.98, max_accuracy_drop=0.01)
    ok = judge(_metrics(label_agreement=0.99, accuracy=0.90, accuracy_fp32=0.905), budget, "labels")
    assert ok.passed and ok.metric == "label_agreement"
    assert ok.margin == pytest.approx(0.01)
    # Agreement within budget, but accuracy fell further than allowed: rejected, and it says why.
    bad = judge(_metrics(label_agreement=0.99, accuracy=0.85, accuracy_fp32=0.90), budget, "labels")
    assert not bad.passed and bad.margin > 0
    assert [f.split()[0] for f in bad.failures()] == ["accuracy_drop"]


def test_gate_for_embeddings_and_tensors() -> None:
    budget = AccuracyBudget(min_cosine=0.98, min_psnr_db=30, max_abs_error=0.05)
    cos = judge(_metrics(mean_cosine=0.97, min_cosine=0.9), budget, "cosine")
    assert cos.metric == "mean_cosine" and not cos.passed
    assert cos.margin == pytest.approx(-0.01)
    tensor = judge(_metrics(), budget, "tensor")
    assert tensor.metric == "psnr_db"
    assert [c.name for c in tensor.checks] == ["psnr_db", "max_abs"]
    assert not tensor.passed  # max_abs 0.1 > 0.05
    assert judge(_metrics(), AccuracyBudget(min_psnr_db=30), "tensor").passed


# --- metrics ------------------------------------------------------------------------------------


def _label_set(n: int, classes: int, gold: list[str] | None = None) -> EvalSet:
    names = [f"c{i}" for i in range(classes)]
    mapped = map_gold(gold or [None] * n, names)
    return EvalSet([{"input_ids": np.zeros((n, 3), np.int64)}], mapped, names, "labels")


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.integers(2, 6), st.data())
def test_label_agreement_counts_flipped_predictions(n: int, classes: int, data) -> None:
    rng = np.random.default_rng(n * classes)
    logits = rng.normal(size=(n, classes)).astype(np.float32)
    flipped = data.draw(st.sets(st.integers(0, n - 1)))
    candidate = logits.copy()
    for row in flipped:  # move the argmax elsewhere
        best = int(candidate[row].argmax())
        candidate[row, (best + 1) % classes] = candidate[row].max() + 1.0
    metrics = compare_outputs([[logits]], [[candidate]], _label_set(n, classes))
    assert metrics.label_agreement == pytest.approx(1 - len(flipped) / n)
    same = compare_outputs([[logits]], [[logits]], _label_set(n, classes))
    assert same.label_agreement == 1.0 and same.max_abs == 0.0 and same.psnr_db == float("inf")


def test_accuracy_and_f1_against_gold_labels() -> None:
    reference = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]], np.float32)
    candidate = reference.copy()
    candidate[3] = [2.0, 0.0]  # the last prediction changes from c1 to c0
    data = _label_set(4, 2, gold=["c0", "c1", "c0", "c1"])
    metrics = compare_outputs([[reference]], [[candidate]], data)
    assert metrics.accuracy_fp32 == 1.0 and metrics.macro_f1_fp32 == 1.0
    assert metrics.accuracy == 0.75
    assert 0.7 < metrics.macro_f1 < 0.75  # c0: P 2/3 R 1 -> 0.8; c1: P 1 R 1/2 -> 0.667


def test_cosine_metrics_and_non_finite_outputs() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(6, 16)).astype(np.float32)
    data = EvalSet([{"input_ids": np.zeros((6, 3), np.int64)}], None, None, "cosine")
    scaled = compare_outputs([[reference]], [[reference * 3.0]], data)  # same direction
    assert scaled.mean_cosine == pytest.approx(1.0) and scaled.min_cosine == pytest.approx(1.0)
    broken = reference.copy()
    broken[0, 0] = np.inf  # an FP16 overflow must fail the gate, not slip through as NaN
    metrics = compare_outputs([[reference]], [[broken]], data)
    assert metrics.mean_cosine == -1.0 and metrics.max_abs == float("inf")
    assert not judge(metrics, AccuracyBudget(), "cosine").passed


# --- sensitivity search -------------------------------------------------------------------------


def _fake_evaluator(bad: set[str]):
    """The gate passes when every layer in `bad` is kept in float; the metric falls per bad layer."""
    calls: list[frozenset[str]] = []

    def evaluate(float_layers: frozenset[str]) -> Trial:
        calls.append(float_layers)
        missing = len(bad - float_layers)
        value = 1.0 - 0.05 * missing
        gate = judge(_metrics(mean_cosine=value, min_cosine=value), AccuracyBudget(min_cosine=0.98), "cosine")
        return Trial(float_layers, gate, _metrics(mean_cosine=value), None)

    return evaluate, calls


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 40), st.data())
def test_search_keeps_exactly_the_bad_layers_when_the_ranking_finds_them(layers: int, data) -> None:
    names = [f"layer{i}" for i in range(layers)]
    bad = data.draw(st.sets(st.sampled_from(names), min_size=1, max_size=layers - 1))
    # A ranking that is right about the bad layers but puts some good ones among them.
    scores = {name: (0.0 if name in bad else data.draw(st.floats(1, 50))) for name in names}
    ranking = rank_layers(scores, names)
    evaluate, calls = _fake_evaluator(bad)
    best, budget = search(ranking, evaluate, max_evaluations=200)
    assert best is not None and best.gate.passed
    assert best.float_layers == bad  # pruning returns every good layer to INT8
    assert len(calls) == len(set(calls))  # no configuration evaluated twice
    for layer in bad:  # each kept layer's cost was measured: quantizing it fails the gate
        assert budget.cost_of[layer] < 0.98


def test_search_respects_its_evaluation_budget_and_never_returns_all_float() -> None:
    names = [f"layer{i}" for i in range(30)]
    evaluate, calls = _fake_evaluator(set(names))  # only all-float would pass
    best, _ = search(names, evaluate, max_evaluations=5)
    assert best is None and len(calls) == 5
    evaluate, calls = _fake_evaluator(set(names))
    best, _ = search(names, evaluate, max_evaluations=100)
    assert best is None  # keeping every layer in float is FP32, not an INT8 variant
    assert max(len(c) for c in calls) == len(names) - 1


def test_ranking_puts_unmeasured_layers_last_in_graph_order() -> None:
    assert rank_layers({"b": 3.0, "d": 1.0}, ["a", "b", "c", "d"]) == ["d", "b", "a", "c"]


# --- layers, FP16, SQNR on a small real graph ---------------------------------------------------


def _tiny_encoder(path: Path) -> Path:
    """input [batch, seq, 8] -> MatMul -> Add -> LayerNorm -> MatMul -> mean-pool -> L2-normalise."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(16,)).astype(np.float32), "b1"),
        numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(16, np.float32), "beta"),
        numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="/enc/layer.0/dense/MatMul"),
        helper.make_node("Add", ["h1", "b1"], ["h2"], name="/enc/layer.0/dense/Add"),
        helper.make_node("LayerNormalization", ["h2", "gamma", "beta"], ["h3"], name="/enc/layer.0/LayerNorm/LN", axis=-1),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"], name="/enc/layer.0/output/MatMul"),
        helper.make_node("ReduceMean", ["h4", "axis1"], ["pooled"], name="/pool/ReduceMean", keepdims=0),
        helper.make_node("ReduceL2", ["pooled", "axis1"], ["norm"], name="/pool/ReduceL2", keepdims=1),
        helper.make_node("Div", ["pooled", "norm"], ["embedding"], name="/pool/Div"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_layers_are_module_scopes() -> None:
    node = helper.make_node(
        "MatMul", ["a", "b"], ["c"], name="/model/bert/encoder/layer.3/output/dense/MatMul"
    )
    assert layer_of(node) == "/model/bert/encoder/layer.3/output/dense"
    assert layer_of(helper.make_node("MatMul", ["a", "b"], ["c"], name="MatMul_12")) == "MatMul_12"


def test_group_layers_on_a_graph(tmp_path: Path) -> None:
    model = _tiny_encoder(tmp_path / "tiny.onnx")
    assert group_layers(model, ["MatMul"]) == {
        "/enc/layer.0/dense": ["/enc/layer.0/dense/MatMul"],
        "/enc/layer.0/output": ["/enc/layer.0/output/MatMul"],
    }
    everything = group_layers(model, None)  # every op onnxruntime can quantize
    assert "/enc/layer.0/LayerNorm" in everything and "/enc/layer.0/dense" in everything


def test_fp16_keeps_sensitive_ops_and_the_output_tail_in_fp32(tmp_path: Path) -> None:
    src = _tiny_encoder(tmp_path / "tiny.onnx")
    assert set(output_tail(onnx.load(str(src)))) == {"/pool/ReduceMean", "/pool/ReduceL2", "/pool/Div"}
    info = convert_fp16(src, tmp_path / "fp16.onnx", ["LayerNormalization"])
    assert info.fp32_tail_nodes and info.fp32_nodes == 4
    converted = onnx.load(str(tmp_path / "fp16.onnx"))
    io_types = [v.type.tensor_type.elem_type for v in [*converted.graph.input, *converted.graph.output]]
    assert io_types == [TensorProto.FLOAT, TensorProto.FLOAT]  # clients see no change
    weights = {i.name: i.data_type for i in converted.graph.initializer}
    assert weights["w1"] == TensorProto.FLOAT16 and weights["gamma"] == TensorProto.FLOAT
    x = np.random.default_rng(1).normal(size=(3, 5, 8)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(tmp_path / "fp16.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    assert got.dtype == np.float32 and np.allclose(got, ref, atol=5e-3)


def test_layer_sqnr_ranks_the_layer_with_an_outlier_input_first(tmp_path: Path) -> None:
    from triton_bundle.precision.calibration import CalibrationSet
    from triton_bundle.precision.int8_qdq import QdqSettings, quantize_qdq
    from triton_bundle.precision.quant_error import dynamic_layer_sqnr, static_layer_sqnr

    src = _tiny_encoder(tmp_path / "tiny.onnx")
    rng = np.random.default_rng(2)
    batches = [{"x": rng.normal(size=(4, 6, 8)).astype(np.float32)} for _ in range(4)]
    batches[0]["x"][0, 0, 0] = 400.0  # one outlier stretches the first MatMul input's range
    qdq = tmp_path / "qdq.onnx"
    cache = tmp_path / "ranges.json"
    quantize_qdq(
        src, qdq, QdqSettings(op_types=["MatMul"]), cache, CalibrationSet(batches, "test", 16, "minmax")
    )
    assert cache.is_file()
    layers = {n: layer for layer, nodes in group_layers(src, ["MatMul"]).items() for n in nodes}
    static = static_layer_sqnr(src, qdq, batches[1:], layers)
    assert static["/enc/layer.0/dense"] < static["/enc/layer.0/output"]
    dynamic = dynamic_layer_sqnr(src, batches[:1], layers)
    assert dynamic["/enc/layer.0/dense"] < dynamic["/enc/layer.0/output"]
    # Re-quantizing from the cached ranges needs no calibration data and excludes what it is told to.
    again = tmp_path / "again.onnx"
    quantize_qdq(src, again, QdqSettings(op_types=["MatMul"]), cache, None, ["/enc/layer.0/dense/MatMul"])
    readers = {
        n.name
        for n in onnx.load(str(again)).graph.node
        if any(i.endswith("DequantizeLinear_Output") for i in n.input)
    }
    assert readers == {"/enc/layer.0/output/MatMul"}


# --- calibration data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from fixtures.export_builders import minilm_path

    from triton_bundle.precision.text_inputs import load_tokenizer

    return load_tokenizer(minilm_path())


def _spec(tmp_path: Path, **data):
    from fixtures.export_builders import make_spec, minilm_path, write_texts

    eval_file = write_texts(tmp_path / "eval.jsonl", 12)
    return make_spec(
        tmp_path,
        name="calib",
        task="feature-extraction",
        source={"path": str(minilm_path())},
        data={"eval": str(eval_file), **data},
    )


def test_calibration_prefers_named_data_and_caps_samples(tmp_path: Path, tokenizer) -> None:
    from fixtures.export_builders import write_texts

    from triton_bundle.precision.calibration import calibration_set

    train = write_texts(tmp_path / "train.jsonl", 30)
    spec = _spec(tmp_path, train=str(train))
    spec.precision.calibration.samples = 20
    cal = calibration_set(spec, tokenizer, ["input_ids", "attention_mask"])
    assert cal.source == str(train) and cal.samples == 20 and not cal.notes
    shapes = {b["input_ids"].shape[1] for b in cal.batches}
    assert len(shapes) > 1 and max(shapes) <= spec.shapes.sequence.max  # natural lengths, not padded to max
    reader = cal.reader()
    assert sum(1 for _ in reader) == len(cal.batches)
    reader.rewind()
    assert reader.get_next() is cal.batches[0]


def test_calibration_falls_back_to_eval_data_and_says_so(tmp_path: Path, tokenizer) -> None:
    from triton_bundle.precision.calibration import calibration_set

    cal = calibration_set(_spec(tmp_path), tokenizer, ["input_ids"])
    assert cal.source.endswith("eval.jsonl") and cal.samples == 12
    assert any("optimistic" in note for note in cal.notes)
    assert any("only 12" in note for note in cal.notes)


def test_random_calibration_only_when_asked_and_warned(tmp_path: Path, tokenizer) -> None:
    from triton_bundle.precision.calibration import RandomCalibrationWarning, calibration_set

    spec = _spec(tmp_path)
    spec.precision.calibration.allow_random = True
    spec.precision.calibration.samples = 10
    with pytest.warns(RandomCalibrationWarning):
        cal = calibration_set(spec, tokenizer, ["input_ids", "attention_mask", "token_type_ids"])
    assert cal.source == "random" and cal.samples == 10
    ids = np.concatenate([b["input_ids"].ravel() for b in cal.batches])
    assert ids.max() < len(tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real data: no warning at all
        calibration_set(_spec(tmp_path), tokenizer, ["input_ids"])


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_takes_batches_of_different_lengths(tmp_path: Path, method: str) -> None:
    from triton_bundle.precision.calibration import CalibrationSet
    from triton_bundle.precision.int8_qdq import QdqSettings, quantize_qdq

    src = _tiny_encoder(tmp_path / "tiny.onnx")
    rng = np.random.default_rng(3)
    batches = [{"x": rng.normal(size=(2, length, 8)).astype(np.float32)} for length in (3, 7, 5)]
    dst = tmp_path / f"{method}.onnx"
    settings = QdqSettings(method=method, op_types=["MatMul"])
    quantize_qdq(src, dst, settings, tmp_path / "cache.json", CalibrationSet(batches, "test", 6, method))
    graph = onnx.load(str(dst)).graph
    readers = {n.name for n in graph.node if any(i.endswith("_DequantizeLinear_Output") for i in n.input)}
    assert readers == {"/enc/layer.0/dense/MatMul", "/enc/layer.0/output/MatMul"}


# --- what build advises --------------------------------------------------------------------------


def test_build_advises_precision_only_for_models_the_stage_can_gate(tmp_path: Path) -> None:
    from fixtures.export_builders import make_spec

    from triton_bundle.engine.stage import available_variants
    from triton_bundle.manifest import Manifest, StageRecord
    from triton_bundle.precision import SUPPORTED_MODALITIES
    from triton_bundle.precision.modalities import MODALITIES

    assert tuple(MODALITIES) == SUPPORTED_MODALITIES  # the engine stage's light copy stays true
    spec = make_spec(
        tmp_path, name="m", task="image-classification", source={"path": "."}, data={"eval": "e"}
    )
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"not read here")
    for modality, advised in (("vision", True), ("audio", False)):
        export = StageRecord(stage="export", artifacts={"onnx": onnx_file}, details={"modality": modality})
        workdir = tmp_path / modality
        Manifest(model=spec.name, stages={"export": export}).save(workdir)
        ready, skipped = available_variants(spec, workdir)
        assert ready == ["fp32"] and set(skipped) == {"fp16", "int8"}
        for why in skipped.values():
            assert ("triton-bundle precision" in why) is advised, why
