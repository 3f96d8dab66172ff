"""The generation benchmark end to end on a tiny configuration: a tiny GPT-2 behind the gunicorn
baseline, the stand-in streaming decoder in the real local Triton, and a small KV-cache decoder graph in
onnxruntime. No timing assertions: every row is there, consistent, and the cache run matches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from trtllm_models import tiny_decoder

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow


def kv_decoder(path: Path, vocab: int = 300, heads: int = 2, size: int = 4) -> Path:
    """One attention layer with the exported decoder's contract: input_ids, attention_mask,
    past_key_values.0.{key,value} [B, heads, past, size] -> logits, present.0.{key,value}. Keys and
    values depend on each token only, so the cached and recomputed runs must pick the same tokens."""
    hidden = heads * size
    rng = np.random.default_rng(0)
    weights = {
        name: helper.make_tensor(name, TensorProto.FLOAT, shape, rng.standard_normal(shape).astype(np.float32).ravel())
        for name, shape in (("E", [vocab, hidden]), ("Wq", [hidden, hidden]), ("Wk", [hidden, hidden]),
                            ("Wv", [hidden, hidden]), ("Wo", [hidden, vocab]))
    }  # fmt: skip
    heads_shape = helper.make_tensor("heads", TensorProto.INT64, [4], [0, 0, heads, size])
    flat_shape = helper.make_tensor("flat", TensorProto.INT64, [3], [0, 0, hidden])
    split = lambda src, dst: [  # noqa: E731 - [B,S,hidden] -> [B,heads,S,size]
        helper.make_node("Reshape", [src, "heads"], [f"{dst}_r"]),
        helper.make_node("Transpose", [f"{dst}_r"], [dst], perm=[0, 2, 1, 3]),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
        *(helper.make_node("MatMul", ["emb", w], [o]) for w, o in (("Wq", "q0"), ("Wk", "k0"), ("Wv", "v0"))),
        *split("q0", "q"), *split("k0", "k"), *split("v0", "v"),
        helper.make_node("Concat", ["past_key_values.0.key", "k"], ["present.0.key"], axis=2),
        helper.make_node("Concat", ["past_key_values.0.value", "v"], ["present.0.value"], axis=2),
        helper.make_node("Transpose", ["present.0.key"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "present.0.value"], ["ctx"]),
        helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx_t", "flat"], ["ctx_f"]),
        helper.make_node("MatMul", ["ctx_f", "Wo"], ["logits"]),
    ]  # fmt: skip
    cache = [heads, size]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, ["batch", cache[0], "past", cache[1]]),
        helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT, ["batch", cache[0], "past", cache[1]]),
    ]  # fmt: skip
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", vocab]),
        helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT, ["batch", cache[0], "total", cache[1]]),
        helper.make_tensor_value_info("present.0.value", TensorProto.FLOAT, ["batch", cache[0], "total", cache[1]]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "kv_decoder", inputs, outputs, [*weights.values(), heads_shape, flat_shape]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_generation_benchmark_writes_every_row_and_target(tmp_path: Path):
    import shutil

    checkpoint = tiny_decoder(tmp_path, "gpt2")
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "generation_models" / "fake-gen", repo / "fake-gen")
    out = tmp_path / "out"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "generation.py"),
        "--spec", str(FIXTURES / "generation_spec" / "spec.yaml"), "--workdir", str(tmp_path / "artifacts"),
        "--out", str(out), "--quick", "--duration", "1", "--concurrency", "1,3", "--max-tokens", "6",
        "--checkpoint", str(checkpoint), "--repository", str(repo), "--model", "fake-gen",
        "--onnx", str(kv_decoder(tmp_path / "decoder.onnx")),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "generation.json").read_text())
    assert result["skipped"] == {}
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {
        "baseline x1", "baseline x3", "served x1", "served x3",
        "onnxruntime with KV cache", "onnxruntime no cache (prefix recomputed)",
    }  # fmt: skip
    for row in rows.values():
        assert row["tokens_per_s"] > 0 and row["streams"] > 0 and row["errors"] == 0, row
        assert 0 < row["ttft"]["p50_ms"] <= row["ttft"]["p95_ms"], row
    assert (
        rows["served x3"]["concurrency"] == 3
        and rows["onnxruntime no cache (prefix recomputed)"]["notes"] == []
    )
    names = [t["name"] for t in result["targets"]]
    assert names == [
        "served tokens/s at 3 streams vs baseline",
        "served TTFT p95 at 3 streams vs baseline",
        "KV cache gain, onnxruntime in-process",
    ]
    assert all(t["passed"] is not None for t in result["targets"])
    table = (out / "generation.md").read_text()
    assert "| served x3 | 3 |" in table and "| KV cache gain, onnxruntime in-process |" in table
