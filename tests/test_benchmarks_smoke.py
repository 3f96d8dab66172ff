"""The benchmark entry point on a tiny configuration (real model, real servers), and the pieces whose
arithmetic the report relies on. No timing assertions: only that every row is there and consistent."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "examples" / "minilm-intent" / "spec.yaml"
sys.path.insert(0, str(ROOT))  # benchmarks/ is a script directory, not an installed package

from benchmarks.machine_limits import cores, limit_for, matmul_work  # noqa: E402
from benchmarks.ort_inprocess import length_groups  # noqa: E402
from benchmarks.results import Latency, Row, StageSplit  # noqa: E402
from benchmarks.settings import BenchSettingsError, parse_served  # noqa: E402
from benchmarks.targets import (  # noqa: E402
    batching_targets,
    expected_padded_width,
    p50_target,
    request_split,
    speedup_target,
)


def _attention_like(path: Path, hidden: int = 8, out: int = 4) -> Path:
    """x[1,L,h] @ W[h,o] (linear in L) and x @ x^T (quadratic in L): known FLOPs at every L."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "L", hidden])
    w = helper.make_tensor("w", TensorProto.FLOAT, [hidden, out], np.ones(hidden * out, np.float32))
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["proj"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["scores"]),
    ]
    outputs = [
        helper.make_tensor_value_info("proj", TensorProto.FLOAT, [1, "L", out]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "L", "L"]),
    ]
    graph = helper.make_graph(nodes, "attention_like", [x], outputs, [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_matmul_work_counts_linear_and_quadratic_terms(tmp_path):
    model = _attention_like(tmp_path / "m.onnx")
    feeds = {n: {"x": np.zeros((1, n, 8), np.float32)} for n in (4, 16, 32)}
    work = matmul_work(model, feeds)
    for length in (7, 50):
        expected = 2 * length * 8 * 4 + 2 * length * 8 * length
        assert work.fp_flops(length) == pytest.approx(expected, rel=1e-6)
        assert work.int8_ops(length) == pytest.approx(0.0, abs=1e-3)
    limit = limit_for(work, [10, 10], measured_per_s=1.0, fp_rate=1.0, int8_rate=1.0, basis="test")
    per_sequence_s = (2 * 10 * 8 * 4 + 2 * 10 * 8 * 10) / 1e9
    assert limit.max_sequences_per_s == pytest.approx(1 / per_sequence_s, rel=1e-3)


def test_served_configs_parse_and_reject_bad_items():
    configs = parse_served("int8-dynamic:dyn:2:500,fp32:off,int8-dynamic:dyn:2:500:1")
    assert [
        (c.variant, c.dynamic_batching, c.instances, c.max_queue_delay_us, c.threads) for c in configs
    ] == [
        ("int8-dynamic", True, 2, 500, max(1, cores() // 2)),
        ("fp32", False, 1, 2000, cores()),
        ("int8-dynamic", True, 2, 500, 1),
    ]
    assert configs[0].slug != configs[1].slug
    for bad in ("int4:dyn", "fp32:maybe", "fp32:dyn:two", "fp32:dyn:1:0:x"):
        with pytest.raises(BenchSettingsError):
            parse_served(bad)


def test_length_groups_split_off_long_texts_and_keep_every_index():
    lengths = [12, 128, 15, 14, 128, 11, 13, 16]
    groups = length_groups(lengths)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    assert {1, 4} in [set(group) for group in groups]  # the two long texts run together, alone
    assert all(lengths[a] <= lengths[b] for group in groups for a, b in itertools.pairwise(group))
    assert len(length_groups([20] * 8)) == 1  # nothing to gain from splitting equal lengths


def test_expected_padded_width_matches_enumeration():
    lengths = [3, 5, 5, 9]
    pairs = [max(a, b) for a in lengths for b in lengths]  # batches of 2, drawn with replacement
    assert expected_padded_width(lengths, 2) == pytest.approx(sum(pairs) / len(pairs))
    assert expected_padded_width(lengths, 1) == pytest.approx(sum(lengths) / len(lengths))


def _row(section: str, concurrency: int, rps: float, p50: float, p95: float, mean: float, stages=()) -> Row:
    return Row(
        section=section,
        name=f"{section} c{concurrency}",
        variant="int8-dynamic" if section == "served" else "pytorch-fp32",
        concurrency=concurrency,
        throughput=rps,
        latency=Latency(p50_ms=p50, p95_ms=p95, p99_ms=p95, mean_ms=mean, samples=100),
        requests=100,
        stages=[
            StageSplit(model=m, requests=100, avg_batch_size=1.0, queue_ms=q, compute_ms=c)
            for m, q, c in stages
        ],
    )


def test_floors_pass_and_fail_on_the_rows_of_the_same_run():
    baseline = [_row("baseline", 1, 60, 15, 40, 16), _row("baseline", 8, 65, 120, 200, 122)]
    stages = [("tok", 0.1, 0.4), ("model", 0.2, 1.5), ("post", 0.1, 0.2)]
    fast = [_row("served", 1, 300, 3.2, 5, 3.5, stages), _row("served", 8, 420, 18, 35, 19, stages)]
    assert request_split(fast[0]) == pytest.approx((0.4, 2.1, 1.0))  # 3.5 ms mean - 2.5 ms on the server
    assert request_split(baseline[0]) is None  # no Triton statistics for the baseline

    check = speedup_target(baseline, fast, cores=2)
    assert check.passed and check.measured.startswith(f"{420 / 65:.2f}x") and "baseline c8" in check.measured
    assert p50_target(fast, cores=2).passed and "hops 1.00 ms" in p50_target(fast, cores=2).measured

    slow = [_row("served", 1, 200, 4.5, 8, 5, stages), _row("served", 8, 350, 18, 35, 19, stages)]
    assert speedup_target(baseline, slow, cores=2).passed is False  # 5.4x < 6x
    assert p50_target(slow, cores=2).passed is False and p50_target(slow, cores=2).where_time_goes
    late = [_row("served", 8, 500, 150, 260, 152, stages)]  # fast enough, but p95 above the baseline's
    assert speedup_target(baseline, late, cores=2).passed is False
    assert speedup_target(baseline, fast[:1], cores=2).passed is None  # 8 clients not measured
    assert p50_target(fast[1:], cores=2).passed is None


def test_batching_floor_compares_each_queue_delay_with_no_batching():
    def served(rps: float, p50: float, delay: int | None) -> Row:
        row = _row("served", 16, rps, p50, p50 * 2, p50)
        row.settings = {"dynamic_batching": delay is not None, "max_queue_delay_us": delay, "instances": 1}
        return row

    checks = batching_targets([served(390, 40, 2000), served(330, 40, 0), served(260, 60, None)], cores=2)
    assert [(c.name, c.passed) for c in checks] == [
        ("dynamic batching 2000us, int8-dynamic x1", True),  # 1.5x
        ("dynamic batching 0us, int8-dynamic x1", False),  # 1.27x < 1.3x
    ]
    assert checks[1].measured.startswith(f"{330 / 260:.2f}x throughput (330.0 vs 260.0 req/s)")


@pytest.mark.slow
def test_quick_run_writes_every_section(demo_workdir: Path, tmp_path: Path):
    # A private copy: the benchmark runs the precision stage in the workdir it is given.
    workdir = tmp_path / "artifacts"
    shutil.copytree(demo_workdir, workdir)
    out = tmp_path / "bench"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--spec",
        str(DEMO_SPEC),
        "--workdir",
        str(workdir),
        "--out",
        str(out),
        "--quick",
        "--variants",
        "fp32,int8-dynamic",
        "--batch-sizes",
        "1",
        "--concurrency",
        "2",
        "--duration",
        "1",
        "--served",
        "int8-dynamic:dyn:1,int8-dynamic:off:1",
        "--baseline-workers",
        "1",
    ]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    rows = report["rows"]
    heldout = sum(
        1 for line in (DEMO_SPEC.parent / "data" / "heldout.jsonl").read_text().splitlines() if line
    )

    ort = {(r["variant"], r["batch_size"], r["sequence"]) for r in rows if r["section"] == "ort"}
    assert ort == {(v, 1, s) for v in ("fp32", "int8-dynamic") for s in ("real mix", "128")}
    baseline = [r for r in rows if r["section"] == "baseline"]
    served = [r for r in rows if r["section"] == "served"]
    assert [r["concurrency"] for r in baseline] == [2]
    assert {(r["settings"]["dynamic_batching"], r["concurrency"]) for r in served} == {(True, 2), (False, 2)}

    for row in rows:
        assert row["requests"] > 0 and row["errors"] == 0, row["name"]
        assert row["throughput"] > 0 and row["latency"]["p50_ms"] <= row["latency"]["p99_ms"], row["name"]
        assert row["accuracy"]["texts"] == heldout, row["name"]
        assert row["limit"]["max_sequences_per_s"] > 0, row["name"]
    fp32 = [r for r in rows if r["section"] == "ort" and r["variant"] == "fp32"]
    assert all(r["accuracy"]["agreement_with_fp32"] == 1.0 for r in fp32)
    # The exported graph matches PyTorch (export parity), so the baseline labels as FP32 ORT does.
    assert baseline[0]["accuracy"]["agreement_with_fp32"] >= 0.98
    for row in served:
        steps = {s["model"] for s in row["stages"]}
        assert {"minilm-intent_tokenizer", "minilm-intent_model"} <= steps
        assert any(k.startswith("stub:") for k in row["cpu"]["per_request_ms"])
    no_batching = next(r for r in served if not r["settings"]["dynamic_batching"])
    model_step = next(s for s in no_batching["stages"] if s["model"] == "minilm-intent_model")
    assert model_step["avg_batch_size"] == 1.0  # without a dynamic batcher every request runs alone

    names = {t["name"] for t in report["targets"]}
    assert names >= {"served INT8 vs PyTorch-eager HTTP baseline", "served INT8 p50 at 1 client"}
    assert any(r["section"] == "gpu" for r in rows) or any(s["section"] == "gpu" for s in report["skipped"])
    assert (out / "benchmark.md").is_file()
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "cpu_per_request.png",
        "ort_variants.png",
        "served_throughput_latency.png",
    ]
