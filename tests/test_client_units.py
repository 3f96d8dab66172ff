"""Client pieces that need no server: URL parsing, input checks, batching order, retry policy, input
readers, statistics parsing."""

from __future__ import annotations

import asyncio
import io
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from tritonclient.utils import InferenceServerException

from triton_bundle.client.batching import arun_ordered, batch_slices, merge_outputs, run_ordered, split_inputs
from triton_bundle.client.cli import ProtocolChoice, _server
from triton_bundle.client.connection import parse_endpoint
from triton_bundle.client.errors import (
    ClientTimeoutError,
    EndpointError,
    InvalidInputError,
    ServerRejectedError,
    ServerUnavailableError,
)
from triton_bundle.client.metadata import ModelMetadata, validate_inputs
from triton_bundle.client.readers import InputFileError, read_texts
from triton_bundle.client.retry import Failure, RetryPolicy, call_with_retry, classify_failure
from triton_bundle.client.stats import parse_statistics, stats_table
from triton_bundle.client.tasks import text_list, text_request
from triton_bundle.errors import BundleError

# --------------------------------------------------------------------------------------------- endpoint


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("http://triton-host:9000", None, ("http", "triton-host", 9000, False)),
        ("https://triton.example", None, ("http", "triton.example", 8000, True)),
        ("grpc://localhost", None, ("grpc", "localhost", 8001, False)),
        ("grpcs://h:443", "grpc", ("grpc", "h", 443, True)),
        ("127.0.0.1:8123", "grpc", ("grpc", "127.0.0.1", 8123, False)),
        ("127.0.0.1", None, ("http", "127.0.0.1", 8000, False)),
        ("[::1]:8001", "grpc", ("grpc", "::1", 8001, False)),
    ],
)
def test_endpoint_protocol_comes_from_scheme_or_flag(url, protocol, expected) -> None:
    endpoint = parse_endpoint(url, protocol)
    assert (endpoint.protocol, endpoint.host, endpoint.port, endpoint.ssl) == expected
    # address is what tritonclient's constructors take: no scheme
    assert "://" not in endpoint.address
    assert parse_endpoint(endpoint.url) == endpoint


@pytest.mark.parametrize(
    ("url", "protocol", "needle"),
    [
        ("http://h:8000", "grpc", "contradicts"),
        ("ftp://h", None, "unsupported URL scheme"),
        ("h:notaport", None, "bad port"),
        ("http://h:8000/v2/models", None, "unexpected path"),
        ("", None, "empty"),
        ("h:1", "websocket", "unknown protocol"),
    ],
)
def test_bad_endpoints_say_what_was_expected(url, protocol, needle) -> None:
    with pytest.raises(EndpointError, match=needle):
        parse_endpoint(url, protocol)


# --------------------------------------------------------------------------------------------- metadata

# The shape of Triton's metadata + config answers (gRPC renders int64 dims as strings).
_ECHO_METADATA = {
    "name": "echo",
    "versions": ["1"],
    "platform": "python",
    "inputs": [
        {"name": "TEXT", "datatype": "BYTES", "shape": ["-1", "1"]},
        {"name": "SCALE", "datatype": "FP32", "shape": ["-1", "3"]},
    ],
    "outputs": [{"name": "OUT", "datatype": "FP32", "shape": ["-1", "3"]}],
}
_ECHO_CONFIG = {"max_batch_size": 4, "input": [{"name": "TEXT"}, {"name": "SCALE", "optional": False}]}


@pytest.fixture
def echo_metadata() -> ModelMetadata:
    return ModelMetadata.from_server(_ECHO_METADATA, _ECHO_CONFIG)


def _good(n: int) -> dict[str, np.ndarray]:
    return {
        "TEXT": np.array([[f"t{i}".encode()] for i in range(n)], dtype=object),
        "SCALE": np.zeros((n, 3), dtype=np.float32),
    }


def test_metadata_parses_grpc_json(echo_metadata: ModelMetadata) -> None:
    assert echo_metadata.batched and echo_metadata.max_batch_size == 4
    assert echo_metadata.input("SCALE").shape == [-1, 3]
    with pytest.raises(InvalidInputError, match="no input 'NOPE'; its inputs are: TEXT, SCALE"):
        echo_metadata.input("NOPE")


def test_valid_inputs_return_the_batch_size_even_above_max_when_splitting(echo_metadata) -> None:
    assert validate_inputs(echo_metadata, _good(3)) == 3
    assert validate_inputs(echo_metadata, _good(10), split_batches=True) == 10
    with pytest.raises(InvalidInputError, match="exceeds the model's max_batch_size 4"):
        validate_inputs(echo_metadata, _good(10), split_batches=False)


def test_every_problem_is_named_with_what_was_expected(echo_metadata) -> None:
    bad = {
        "TEXT": np.zeros((2, 1), dtype=np.float32),  # wrong dtype
        "SCALES": np.zeros((2, 3), dtype=np.float32),  # misspelt name
    }
    with pytest.raises(InvalidInputError) as err:
        validate_inputs(echo_metadata, bad)
    message = str(err.value)
    assert "missing input(s) SCALE" in message
    assert "unknown input(s) SCALES (the model takes: TEXT, SCALE)" in message
    assert "'TEXT' expects BYTES, got FP32" in message
    assert isinstance(err.value, BundleError)


def test_shape_and_batch_problems(echo_metadata) -> None:
    inputs = _good(2)
    inputs["SCALE"] = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(InvalidInputError, match=r"'SCALE' dim 1 must be 3 \(shape \[-1, 3\]\), got 4"):
        validate_inputs(echo_metadata, inputs)
    inputs["SCALE"] = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(InvalidInputError, match="disagree on the batch size"):
        validate_inputs(echo_metadata, inputs)
    inputs["SCALE"] = np.zeros((2,), dtype=np.float32)
    with pytest.raises(InvalidInputError, match=r"expects 2 dims \[-1, 3\] \(first is the batch\), got 1"):
        validate_inputs(echo_metadata, inputs)
    inputs["SCALE"] = np.zeros((2, 3), dtype=np.float64)
    with pytest.raises(InvalidInputError, match=r"expects FP32, got FP64.*astype\(np.float32\)"):
        validate_inputs(echo_metadata, inputs)


# --------------------------------------------------------------------------------------------- batching


@given(total=st.integers(0, 300), max_batch=st.integers(1, 64))
def test_batch_slices_cover_every_row_once_and_respect_the_max(total: int, max_batch: int) -> None:
    slices = batch_slices(total, max_batch)
    rows = [i for part in slices for i in range(total)[part]]
    assert rows == list(range(total))
    assert all(0 < part.stop - part.start <= max_batch for part in slices)


@given(total=st.integers(1, 60), max_batch=st.integers(1, 9))
def test_split_then_merge_is_the_identity(total: int, max_batch: int) -> None:
    inputs = {"A": np.arange(total * 2).reshape(total, 2), "B": np.arange(total).reshape(total, 1)}
    chunks = split_inputs(inputs, batch_slices(total, max_batch))
    merged = merge_outputs(chunks)
    for name, array in inputs.items():
        np.testing.assert_array_equal(merged[name], array)


def _slow_echo(item: int) -> tuple[int, str]:
    # Later items finish first: a result list built in completion order would come out reversed.
    time.sleep(0.002 * (20 - item % 20))
    return item, threading.current_thread().name


def test_run_ordered_keeps_input_order_under_concurrency() -> None:
    with ThreadPoolExecutor(4) as pool:
        results = run_ordered(_slow_echo, list(range(40)), pool)
    assert [item for item, _ in results] == list(range(40))
    assert len({thread for _, thread in results}) > 1, "work ran on several threads"


def test_run_ordered_raises_the_first_failure_after_running_work_settles() -> None:
    finished: list[int] = []

    def work(item: int) -> int:
        if item == 3:
            raise ValueError("chunk 3 failed")
        time.sleep(0.01)
        finished.append(item)
        return item

    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="chunk 3"):
        run_ordered(work, list(range(50)), pool)
    assert len(finished) < 50, "chunks after the failure were cancelled"


def test_arun_ordered_keeps_order_and_bounds_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def work(item: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (10 - item % 10))
        in_flight -= 1
        return item

    results = asyncio.run(arun_ordered(work, list(range(30)), 3))
    assert results == list(range(30))
    assert peak == 3


# --------------------------------------------------------------------------------------------- retry


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InferenceServerException("down", status="StatusCode.UNAVAILABLE"), Failure.RETRYABLE),
        (InferenceServerException("busy", status="503"), Failure.RETRYABLE),
        (InferenceServerException("bad dtype", status="400"), Failure.FATAL),
        (InferenceServerException("bad dtype", status="StatusCode.INVALID_ARGUMENT"), Failure.FATAL),
        (InferenceServerException("no model", status="StatusCode.NOT_FOUND"), Failure.FATAL),
        (InferenceServerException("slow", status="StatusCode.DEADLINE_EXCEEDED"), Failure.TIMEOUT),
        (ConnectionRefusedError(111, "refused"), Failure.RETRYABLE),
        (ConnectionResetError(104, "reset"), Failure.RETRYABLE),
        (TimeoutError("read timed out"), Failure.TIMEOUT),
        (aiohttp.ServerDisconnectedError(), Failure.RETRYABLE),
        (aiohttp.ServerTimeoutError(), Failure.TIMEOUT),
        (ValueError("a bug"), Failure.FATAL),
    ],
)
def test_failures_are_sorted_into_retryable_timeout_fatal(exc: BaseException, kind: Failure) -> None:
    assert classify_failure(exc) is kind


class _FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _flaky(failures: list[BaseException], value: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return value

    return fn, calls


def test_retryable_errors_are_retried_with_growing_backoff_until_success() -> None:
    fake = _FakeTime()
    errors = [ConnectionRefusedError(111, "refused")] * 3 + [
        InferenceServerException("x", "StatusCode.UNAVAILABLE")
    ]
    fn, calls = _flaky(list(errors))
    seen = []
    policy = RetryPolicy(max_attempts=6, initial_backoff_s=0.1, multiplier=2.0, jitter=0.0)
    result = call_with_retry(fn, policy, "infer", on_retry=seen.append, sleep=fake.sleep, clock=fake.clock)
    assert result == "ok" and calls["n"] == 5
    assert fake.pauses == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert [event.attempt for event in seen] == [1, 2, 3, 4]


def test_invalid_argument_is_never_retried() -> None:
    fake = _FakeTime()
    fn, calls = _flaky([InferenceServerException("inference input 'TEXT' data-type is 'FP32'", "400")])
    with pytest.raises(ServerRejectedError, match=r"rejected by the server.*data-type") as err:
        call_with_retry(fn, RetryPolicy(), "infer", sleep=fake.sleep, clock=fake.clock)
    assert calls["n"] == 1 and fake.pauses == []
    assert err.value.status == "400"


def test_timeouts_are_not_retried() -> None:
    fn, calls = _flaky([TimeoutError("timed out")])
    with pytest.raises(ClientTimeoutError, match="raise the client timeout"):
        call_with_retry(fn, RetryPolicy(), "infer", sleep=_FakeTime().sleep)
    assert calls["n"] == 1


def test_retries_stop_at_max_attempts() -> None:
    fake = _FakeTime()
    fn, calls = _flaky([ConnectionRefusedError(111, "refused")] * 10)
    with pytest.raises(ServerUnavailableError, match="failed after 3 attempt"):
        call_with_retry(fn, RetryPolicy(max_attempts=3), "infer", sleep=fake.sleep, clock=fake.clock)
    assert calls["n"] == 3


def test_retries_stop_when_the_time_budget_is_spent() -> None:
    fake = _FakeTime()
    fn, calls = _flaky([ConnectionRefusedError(111, "refused")] * 100)
    policy = RetryPolicy(
        max_attempts=100, initial_backoff_s=1.0, max_backoff_s=1.0, jitter=0.0, max_total_s=5.0
    )
    with pytest.raises(ServerUnavailableError, match="5 s"):
        call_with_retry(fn, policy, "infer", sleep=fake.sleep, clock=fake.clock)
    assert fake.now <= 5.0
    assert calls["n"] == 6  # pauses of 1 s after attempts 1..5; a 6th pause would pass 5 s


@settings(max_examples=200)
@given(retry=st.integers(1, 30), seed=st.integers(0, 2**32 - 1), jitter=st.floats(0, 1))
def test_backoff_stays_between_the_jittered_floor_and_the_cap(retry: int, seed: int, jitter: float) -> None:
    policy = RetryPolicy(initial_backoff_s=0.2, max_backoff_s=5.0, multiplier=2.0, jitter=jitter)
    delay = policy.backoff_s(retry, random.Random(seed))
    base = min(5.0, 0.2 * 2.0 ** (retry - 1))
    assert base * (1 - jitter) - 1e-12 <= delay <= base


# --------------------------------------------------------------------------------------------- readers


def test_readers_jsonl_csv_lines_and_sniffing() -> None:
    jsonl = '{"text": "a", "label": 1}\n\n"b"\n{"text": "c, d"}\n'
    assert list(read_texts(io.StringIO(jsonl), "jsonl")) == ["a", "b", "c, d"]
    assert list(read_texts(io.StringIO(jsonl), "auto")) == ["a", "b", "c, d"]
    csv_text = 'id,body\n1,"hello, world"\n2,"multi\nline"\n'
    assert list(read_texts(io.StringIO(csv_text, newline=""), "csv", field="body")) == [
        "hello, world",
        "multi\nline",
    ]
    assert list(read_texts(io.StringIO("\nfirst line\n\n second \n"), "auto")) == ["first line", " second "]


def test_reader_errors_name_the_line_and_the_fix() -> None:
    with pytest.raises(InputFileError, match=r"in.jsonl:2: expected .* 'text' field \(got: body\); pick"):
        list(read_texts(io.StringIO('{"text": "ok"}\n{"body": "x"}\n'), "jsonl", source="in.jsonl"))
    with pytest.raises(InputFileError, match=r"x.jsonl:1: not valid JSON"):
        list(read_texts(io.StringIO("{oops\n"), "jsonl", source="x.jsonl"))
    with pytest.raises(InputFileError, match=r"no 'text' column \(columns: id, body\)"):
        list(read_texts(io.StringIO("id,body\n1,x\n"), "csv"))


# --------------------------------------------------------------------------------------------- stats


def _stats_payload(as_strings: bool) -> dict:
    def n(value: int):
        return str(value) if as_strings else value

    return {
        "model_stats": [
            {
                "name": "m",
                "version": "1",
                "inference_count": n(30),
                "execution_count": n(8),
                "inference_stats": {
                    "success": {"count": n(12), "ns": n(9_000_000)},
                    "fail": {} if as_strings else {"count": 0, "ns": 0},
                    "queue": {"count": n(12), "ns": n(2_400_000)},
                    "compute_infer": {"count": n(12), "ns": n(6_000_000)},
                },
                "batch_stats": [
                    {"batch_size": n(4), "compute_infer": {"count": n(7), "ns": n(1)}},
                    {"batch_size": n(2), "compute_infer": {"count": n(1), "ns": n(1)}},
                ],
                "response_stats": {},
            }
        ]
    }


@pytest.mark.parametrize("grpc_style", [False, True])
def test_statistics_parse_http_and_grpc_json_alike(grpc_style: bool) -> None:
    (stats,) = parse_statistics(_stats_payload(grpc_style))
    assert stats.request_count == 12
    assert stats.average_batch_size == pytest.approx(30 / 8)
    assert stats.inference_stats.queue.avg_us == pytest.approx(200.0)
    assert stats.inference_stats.compute_input.avg_us is None
    assert stats.batches_formed == {2: 1, 4: 7}
    console = Console(width=200, record=True)
    console.print(stats_table([stats]))
    text = console.export_text()
    assert "3.75" in text and "4x7 2x1" in text


# --------------------------------------------------------------------------------------------- tasks / CLI


def test_text_request_builds_the_ensemble_input_and_names_mistakes() -> None:
    metadata = ModelMetadata.from_server(
        {"name": "m", "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1, 1]}], "outputs": []},
        {"max_batch_size": 8},
    )
    (tensor,) = text_request(metadata, ["héllo", "b"]).values()
    assert tensor.shape == (2, 1) and tensor.dtype == object
    assert tensor[0, 0] == "héllo".encode()
    with pytest.raises(InvalidInputError, match="single string; wrap it in a list"):
        text_list("just one")
    with pytest.raises(InvalidInputError, match=r"items \[1\] are not"):
        text_list(["a", 2])  # type: ignore[list-item]
    unbatched = metadata.model_copy(update={"max_batch_size": 0})
    with pytest.raises(InvalidInputError, match="does not batch"):
        text_request(unbatched, ["a"])


def test_cli_server_address_from_flags_or_the_spec() -> None:
    spec = Path(__file__).resolve().parents[1] / "examples" / "minilm-intent" / "spec.yaml"
    assert _server(None, None, spec) == ("127.0.0.1:8000", "http")
    assert _server(None, ProtocolChoice.grpc, spec) == ("127.0.0.1:8001", "grpc")
    assert _server("grpc://h:9", None, spec) == ("grpc://h:9", None)
    assert _server(None, None, None) == ("127.0.0.1:8000", "http")
