"""Load-test parts that need no server: shapes, SLO gate, histograms, workload, capacity search, settings."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triton_bundle.atomic import ArtifactExistsError
from triton_bundle.errors import BundleError
from triton_bundle.loadtest.capacity import CapacityUsageError, LevelOutcome, search
from triton_bundle.loadtest.results import (
    LatencySummary,
    LocustSummary,
    SecondBucket,
    bucket_ms,
    percentile,
    timeline_points,
)
from triton_bundle.loadtest.settings import Endpoint, LoadtestUsageError, ShapeSettings
from triton_bundle.loadtest.shapes import ArrivalRateShape, plan_for
from triton_bundle.loadtest.slo import evaluate
from triton_bundle.loadtest.stage import Overrides, build_settings, prepare_run_dir, resolve_endpoint
from triton_bundle.loadtest.workload import text_workload, workload_for
from triton_bundle.spec import SLOSpec, load_spec

SPEC = Path(__file__).parent / "fixtures" / "loadtest_spec" / "spec.yaml"
DEMO_SPEC = Path(__file__).parents[1] / "examples" / "minilm-intent" / "spec.yaml"


def _run(requests: int, failures: int, rps: float, p50=None, p95=None, p99=None) -> LocustSummary:
    return LocustSummary(
        started_at=0.0,
        ended_at=10.0,
        stop_reason="duration reached",
        requests=requests,
        failures=failures,
        rps=rps,
        request_batch_size=1,
        latency=LatencySummary(p50_ms=p50, p95_ms=p95, p99_ms=p99),
    )


# ----------------------------------------------------------------------------------------------- shapes


def _users_over(kind: str, **kw) -> list[int | None]:
    plan = plan_for(ShapeSettings(kind=kind, users=8, spawn_rate=2, duration_s=10, **kw))
    ticks = [plan.tick(t + 0.5) for t in range(12)]
    return [None if t is None else t.users for t in ticks]


def test_every_shape_stops_at_its_duration():
    for kind in ("constant", "ramp", "step", "spike"):
        users = _users_over(kind)
        assert all(u is not None and 1 <= u <= 8 for u in users[:10]), kind
        assert users[10:] == [None, None], kind


def test_ramp_rises_and_step_climbs_in_plateaus():
    ramp = _users_over("ramp")[:10]
    assert ramp == sorted(ramp) and ramp[0] < ramp[-1] == 8
    step = _users_over("step", steps=4)[:10]
    assert step == sorted(step) and len(set(step)) == 4 and step[-1] == 8


def test_spike_jumps_then_returns_to_baseline():
    users = _users_over("spike", spike_start=0.4, spike_length=0.2)[:10]
    assert users[0] == users[-1] == 2  # baseline: a quarter of the users
    assert max(users) == 8 and users.index(8) == 4


def test_arrival_rate_pool_holds_the_rate_at_one_second_latency():
    shape = ShapeSettings(kind="arrival-rate", users=4, duration_s=5, target_rps=50)
    plan = plan_for(shape)
    assert isinstance(plan, ArrivalRateShape)
    assert plan.pool == 50 and plan.per_user_rps * plan.pool == pytest.approx(50)


def test_arrival_rate_without_a_rate_is_refused():
    with pytest.raises(ValueError, match="target rate"):
        ShapeSettings(kind="arrival-rate")


# ----------------------------------------------------------------------------------------------- SLO gate


def test_gate_names_the_failed_slo_and_by_how_much():
    gate = evaluate(SLOSpec(p95_ms=100, p99_ms=500, min_rps=50), _run(1000, 0, 40.0, 50, 180, 300))
    assert not gate.passed
    assert [c.name for c in gate.failed] == ["p95_ms", "min_rps"]
    p95 = gate.failed[0]
    assert p95.margin == pytest.approx(-80) and p95.margin_pct == pytest.approx(-80)
    assert "over by 80 ms" in p95.explain()
    assert "short by 10 req/s" in gate.failed[1].explain()


def test_gate_counts_errors_against_the_budget():
    slo = SLOSpec(max_error_rate=0.01)
    assert evaluate(slo, _run(1000, 10, 100.0, 5, 5, 5)).passed
    failed = evaluate(slo, _run(1000, 11, 100.0, 5, 5, 5))
    assert [c.name for c in failed.failed] == ["max_error_rate"]


def test_gate_fails_a_run_without_requests():
    gate = evaluate(SLOSpec(p95_ms=100, min_rps=1), _run(0, 0, 0.0))
    assert not gate.passed and all(not c.passed for c in gate.checks)
    assert "not measured" in gate.checks[0].explain()


# ----------------------------------------------------------------------------------------------- histograms


@given(st.lists(st.floats(min_value=0.05, max_value=20_000), min_size=1, max_size=300))
@settings(max_examples=50, deadline=None)
def test_histogram_percentiles_are_ordered_and_within_range(samples):
    hist: dict[float, int] = {}
    for ms in samples:
        hist[bucket_ms(ms)] = hist.get(bucket_ms(ms), 0) + 1
    p50, p95, p99 = (percentile(hist, q) for q in (0.5, 0.95, 0.99))
    assert min(hist) <= p50 <= p95 <= p99 <= max(hist)
    # Buckets keep about two significant digits (0.1 ms below 10 ms).
    assert all(abs(bucket_ms(ms) - ms) <= max(0.05, 0.05 * ms) for ms in samples)


def test_timeline_fills_quiet_seconds_with_zero():
    buckets = [
        SecondBucket(second=100, requests=3, histogram={5.0: 3}, users=2),
        SecondBucket(second=102, requests=1, failures=1, histogram={50.0: 1}),
    ]
    points = timeline_points(buckets, start=99.5)
    assert [p.rps for p in points] == [3, 0, 1]
    assert [p.t_s for p in points] == [0.5, 1.5, 2.5]
    assert points[1].p95_ms is None and points[2].failures_per_s == 1


# ----------------------------------------------------------------------------------------------- workload


def test_text_workload_keeps_the_data_length_mix():
    spec = load_spec(DEMO_SPEC)
    workload = workload_for(spec)
    assert workload.kind == "text" and len(workload.texts) > 100
    profile = workload.length_profile()
    assert profile is not None and profile.chars_p50 < profile.chars_p90 <= profile.chars_max
    batch = workload.make_batch(random.Random(1), 4)
    assert len(batch) == 1 and batch[0].name == "TEXT" and batch[0].datatype == "BYTES"
    assert batch[0].array.shape == (4, 1)
    # Uniform draws over the pool: sampled lengths follow the data's, not one typical length.
    rng = random.Random(0)
    drawn = sorted(len(workload.make_batch(rng, 1)[0].array[0, 0]) for _ in range(2000))
    assert drawn[1000] == pytest.approx(profile.chars_p50, rel=0.25)


def test_text_workload_without_data_says_what_is_missing(tmp_path: Path):
    spec = load_spec(SPEC)
    spec.data.eval = tmp_path / "missing.jsonl"
    with pytest.raises(BundleError, match=r"data\.eval"):
        text_workload(spec)


def test_image_workload_sends_the_encoded_files(tmp_path: Path):
    from matplotlib.figure import Figure

    from triton_bundle.spec import ModelSpec

    for i in range(3):  # real PNG files of different sizes
        fig = Figure(figsize=(1 + i, 1))
        fig.subplots().plot([0, i])
        fig.savefig(tmp_path / f"img{i}.png")
    rows = [{"image": f"img{i}.png", "label": str(i)} for i in range(3)]
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = ModelSpec.model_validate(
        {
            "name": "vit",
            "task": "image-classification",
            "source": {"path": "."},
            "data": {"eval": "eval.jsonl"},
        }
    )
    spec.base_dir = tmp_path
    workload = workload_for(spec)
    assert workload.kind == "image" and workload.expected_inputs() == {"IMAGE": "BYTES"}
    batch = workload.make_batch(random.Random(0), 5)[0]
    files = {(tmp_path / f"img{i}.png").read_bytes() for i in range(3)}
    assert batch.array.shape == (5, 1) and all(item in files for item in batch.array[:, 0])


def _tensor_spec(tmp_path: Path, eval_file: str):
    from triton_bundle.spec import ModelSpec

    spec = ModelSpec.model_validate(
        {
            "name": "t",
            "task": "tensor",
            "source": {"kind": "torch-module", "module": "m:M"},
            "data": {"eval": eval_file},
            "inputs": [
                {"name": "x", "dtype": "float32", "shape": ["batch", "sequence", 4]},
                {"name": "k", "dtype": "int64", "shape": ["batch"]},
            ],
            "shapes": {"sequence": {"min": 1, "opt": 16, "max": 32}},
        }
    )
    spec.base_dir = tmp_path
    return spec


def test_tensor_workload_sends_rows_of_the_specs_npz(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 7, 4)).astype(np.float64)  # float64 on disk: sent as the declared float32
    k = np.arange(6, dtype=np.int64) * 10
    np.savez(tmp_path / "rows.npz", x=x, k=k)
    workload = workload_for(_tensor_spec(tmp_path, "rows.npz"))
    assert workload.expected_inputs() == {"x": "FP32", "k": "INT64"}
    assert "6 rows of rows.npz" in workload.source
    # Locust workers load the workload from JSON: the rows must survive the round trip.
    workload = type(workload).load(workload.save(tmp_path / "workload.json"))
    xs, ks = workload.make_batch(random.Random(0), 5)
    assert (xs.datatype, xs.array.shape, xs.array.dtype) == ("FP32", (5, 7, 4), np.float32)
    for row, key in zip(xs.array, ks.array, strict=True):
        # Each request row is a real row of the file, and the inputs of one row stay together.
        assert key % 10 == 0 and np.allclose(row, x[key // 10].astype(np.float32))
    assert len({int(v) for v in workload.make_batch(random.Random(1), 32)[1].array}) > 1


def test_perf_analyzer_gets_the_same_npz_rows(tmp_path):
    from triton_bundle.loadtest.perf_analyzer import input_data

    x = np.arange(6 * 7 * 4, dtype=np.float32).reshape(6, 7, 4)
    np.savez(tmp_path / "rows.npz", x=x, k=np.arange(6, dtype=np.int64))
    workload = workload_for(_tensor_spec(tmp_path, "rows.npz"))
    args = input_data(workload, tmp_path / "input.json")
    assert args == ["--input-data", str(tmp_path / "input.json")]
    steps = json.loads((tmp_path / "input.json").read_text())["data"]
    assert steps and all(step["x"]["shape"] == [7, 4] and step["k"]["shape"] == [] for step in steps)
    for step in steps:
        assert step["x"]["content"] == x[step["k"]["content"][0]].reshape(-1).tolist()


def test_tensor_workload_refuses_a_missing_or_mismatched_npz(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        workload_for(_tensor_spec(tmp_path, "missing.npz"))
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 3, 4), np.float32))
    with pytest.raises(BundleError, match="no array 'k'"):
        workload_for(_tensor_spec(tmp_path, "bad.npz"))


# ----------------------------------------------------------------------------------------------- capacity


def _threshold_evaluator(capacity: float, calls: list[float]):
    def evaluate_level(level: float) -> LevelOutcome:
        calls.append(level)
        ok = level <= capacity
        return LevelOutcome(passed=ok, reasons=[] if ok else ["too slow"], rps=level)

    return evaluate_level


@pytest.mark.parametrize("capacity", [1, 5, 13, 37, 64])
def test_capacity_search_finds_the_boundary_in_bounded_steps(capacity: int):
    calls: list[float] = []
    # Doubling 2 -> 64 takes 6 steps, bisecting a 32-wide interval 5 more.
    result = search(_threshold_evaluator(capacity, calls), mode="users", start=2, limit=64, max_steps=11)
    assert result.converged and result.best == capacity
    assert len(calls) == len(result.steps) <= 11
    if capacity < 64:
        assert result.lowest_failing == capacity + 1


def test_capacity_search_reports_when_even_the_lowest_level_fails():
    result = search(_threshold_evaluator(0, []), mode="users", start=4, limit=64, max_steps=8)
    assert result.best is None and result.converged and "lowest" in result.note


def test_capacity_search_stops_at_the_step_budget():
    calls: list[float] = []
    result = search(_threshold_evaluator(1000, calls), mode="rps", start=1, limit=10_000, max_steps=3)
    assert len(calls) == 3 and not result.converged and result.best == 4


def test_capacity_search_rejects_bounds_that_cannot_work():
    with pytest.raises(CapacityUsageError):
        search(_threshold_evaluator(5, []), mode="users", start=10, limit=5, max_steps=3)


# ----------------------------------------------------------------------------------------------- settings


def test_settings_come_from_the_spec_and_overrides(tmp_path: Path):
    spec = load_spec(SPEC)
    settings = build_settings(spec, Overrides(url="127.0.0.1:9999", users=3, request_batch_size=4), tmp_path)
    assert settings.endpoint.url == "127.0.0.1:9999"
    assert settings.endpoint.metrics_url == f"127.0.0.1:{spec.serving.metrics_port}"
    assert settings.shape.users == 3 and settings.shape.duration_s == spec.loadtest.duration_s
    assert settings.request_batch_size == 4 and settings.max_requests == spec.loadtest.max_requests


def test_grpc_endpoint_keeps_the_http_statistics_api_on_the_same_host():
    spec = load_spec(SPEC)
    endpoint = resolve_endpoint(spec, Overrides(protocol="grpc", url="127.0.0.1:7001"))
    assert endpoint.protocol == "grpc" and endpoint.stats_url() == f"127.0.0.1:{spec.serving.http_port}"


def test_metrics_on_another_host_are_refused():
    with pytest.raises(ValueError, match="only talks to the host"):
        Endpoint(url="127.0.0.1:8000", metrics_url="10.0.0.5:8002")
    with pytest.raises(LoadtestUsageError, match="host:port"):
        resolve_endpoint(load_spec(SPEC), Overrides(url="no-port-here"))


def test_run_directory_needs_force_and_never_wipes_foreign_content(tmp_path: Path):
    run = prepare_run_dir(tmp_path / "lt", force=False)
    (run / "report.json").write_text("{}")
    with pytest.raises(ArtifactExistsError, match="--force"):
        prepare_run_dir(run, force=False)
    assert not (prepare_run_dir(run, force=True) / "report.json").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(ArtifactExistsError, match="not empty"):
        prepare_run_dir(foreign, force=True)
    assert (foreign / "notes.txt").exists()


def test_no_server_at_the_url_is_a_usage_error(tmp_path: Path):
    import socket

    from triton_bundle.loadtest.runner import ServerNotReadyError
    from triton_bundle.loadtest.stage import loadtest_stage

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = load_spec(SPEC)
    with pytest.raises(ServerNotReadyError, match=f"127.0.0.1:{port}"):
        loadtest_stage(spec, tmp_path, Overrides(url=f"127.0.0.1:{port}"))


# ----------------------------------------------------------------------------------- prepared requests


def test_prepared_http_body_is_what_tritonclient_sends_and_is_built_once_per_input():
    import tritonclient.http as httpclient

    from triton_bundle.loadtest.prepared import HEADER_LENGTH, PreparedCache, http_request

    workload = text_workload(load_spec(SPEC))
    rng = random.Random(3)
    cache, built = PreparedCache(), []

    def build(inputs):
        built.append(inputs)
        return http_request(inputs, ["LABELS", "SCORES"], {"authorization": "Bearer t0ken"})

    batches = [workload.make_batch(rng, 2) for _ in range(4)]
    first = cache.get(batches[0], build)
    again = cache.get([type(i)(i.name, i.datatype, i.array.copy()) for i in batches[0]], build)
    assert again is first and len(built) == 1  # the same values: built once, whatever array holds them
    for batch in batches[1:]:
        cache.get(batch, build)
    assert len(cache) == len({tuple(b[0].array.ravel()) for b in batches})

    tensor = httpclient.InferInput("TEXT", [2, 1], "BYTES")
    tensor.set_data_from_numpy(batches[0][0].array, binary_data=True)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in ("LABELS", "SCORES")]
    body, json_size = httpclient.InferenceServerClient.generate_request_body([tensor], outputs=outputs)
    assert first.body == body and first.headers[HEADER_LENGTH] == str(json_size)
    assert first.headers["authorization"] == "Bearer t0ken"  # the proxy's token travels with it (#19)
    assert first.headers["Accept-Encoding"] == "identity"


def test_prepared_cache_stops_keeping_past_its_limit():
    from triton_bundle.loadtest.prepared import PreparedCache
    from triton_bundle.loadtest.workload import InputArray

    cache, built = PreparedCache(limit=2), []
    items = [[InputArray("x", "FP32", np.full((1, 3), float(v), np.float32))] for v in range(4)]
    for item in items + items:
        cache.get(item, lambda i: built.append(i) or object())
    assert len(cache) == 2 and len(built) == 2 + 2 * 2  # two kept, the other two built on every draw

    from triton_bundle.loadtest.prepared import HttpRequest

    small = PreparedCache(max_bytes=10)
    for v in range(3):
        small.get(items[v], lambda i: HttpRequest(body=b"12345", headers={}))
    assert len(small) == 2 and small.bytes == 10  # the third body would pass the byte budget


def test_prepared_grpc_request_carries_the_texts_and_checks_answers_by_shape():
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import deserialize_bytes_tensor

    from triton_bundle.loadtest.prepared import ResponseCheckError, check_grpc, check_http, grpc_request
    from triton_bundle.loadtest.workload import InputArray

    texts = np.array([[b"where is my order?"], ["héllo".encode()]], dtype=object)
    request = grpc_request("m", [InputArray("TEXT", "BYTES", texts)], ["LABELS"])
    assert request.model_name == "m" and list(request.inputs[0].shape) == [2, 1]
    assert [o.name for o in request.outputs] == ["LABELS"]
    assert deserialize_bytes_tensor(request.raw_input_contents[0]).tolist() == texts.ravel().tolist()

    response = service_pb2.ModelInferResponse()
    response.outputs.add(name="LABELS", shape=[2, 3])
    check_grpc(response, ["LABELS"], 2)
    with pytest.raises(ResponseCheckError, match="expected batch dim 3"):
        check_grpc(response, ["LABELS"], 3)
    with pytest.raises(ResponseCheckError, match="'SCORES' missing"):
        check_grpc(response, ["LABELS", "SCORES"], 2)

    header = json.dumps({"outputs": [{"name": "LABELS", "shape": [2, 3]}]}).encode()
    check_http(header + b"\x00binary", str(len(header)), ["LABELS"], 2)
    with pytest.raises(ResponseCheckError, match="'SCORES' missing"):
        check_http(header, None, ["SCORES"], 2)
    with pytest.raises(ResponseCheckError, match="not JSON"):
        check_http(b"\x00\x01", None, ["LABELS"], 2)
