"""Faults against the real local Triton: broken model files, a model that raises, a server killed under a
load test and restarted under a client.

- a corrupt / truncated ONNX file, a missing tokenizer file, a config or label file that does not match its
  model: the load error names the file, that model is not ready, every other model keeps serving;
- a corrupt or truncated TensorRT plan: the start-up preflight refuses it, naming the file (no GPU needed);
- a Python-backend model that raises: only that batch fails, the model keeps serving;
- the server killed during a load test: the run records the errors, ends on time, and its report says what
  happened; the bundle client retries idempotent requests across the restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from triton_bundle.client import ClientOptions, RetryPolicy, TritonClient
from triton_bundle.engine.manifest import EngineManifest, ProfileDims
from triton_bundle.loadtest.report import write_report
from triton_bundle.loadtest.runner import run_loadtest, wall_clock_limit_s
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, build_settings
from triton_bundle.loadtest.workload import workload_for
from triton_bundle.manifest import sha256_file
from triton_bundle.net import free_port
from triton_bundle.repository import contract
from triton_bundle.repository.layout import CONFIG_FILE, read_config
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig, failed_models
from triton_bundle.serving.preflight import EngineMismatchError, GpuInfo, RuntimeInfo, run_preflight
from triton_bundle.spec import ModelSpec

pytestmark = pytest.mark.slow

# Serve what loads: the defaults (exit on error, strict readiness) stop the whole server on one bad model.
SERVE_WHAT_LOADS = ["--exit-on-error=false", "--strict-readiness=false"]

# A Python-backend model whose execute() raises when a request carries a poison value.
RAISER = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        values = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy() for r in requests]
        if any((v < 0).any() for v in values):
            raise RuntimeError("poisoned batch: negative input")
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", v * 2)]) for v in values]
"""


def _text(module, *values: str):
    data = np.array([[v.encode()] for v in values], dtype=np.object_)
    tensor = module.InferInput(contract.TEXT_INPUT, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def _clone(repository: Path, source: str, name: str, edit=None) -> Path:
    """Copy one model of the repository under a new name (config edited), next to the original."""
    directory = repository / name
    shutil.copytree(repository / source, directory)
    config = read_config(directory / CONFIG_FILE)
    config.name = name
    if edit is not None:
        edit(config)
    (directory / CONFIG_FILE).write_text(text_format.MessageToString(config), encoding="utf-8")
    return directory


def _replace(path: Path, data: bytes) -> None:
    path.unlink()  # the generator hard-links large files: never write through to the original
    path.write_bytes(data)


def _int32_inputs(config: mc.ModelConfig) -> None:
    for tensor in config.input:
        tensor.data_type = mc.TYPE_INT32
    del config.model_warmup[:]


# broken model -> (the file its load error must name, words the error must say)
BROKEN = {
    "corrupt_onnx": ("1/model.onnx", "corrupt or truncated"),
    "truncated_onnx": ("1/model.onnx", "corrupt or truncated"),
    "missing_tokenizer": ("1/tokenizer.json", "not found"),
    "config_not_matching_model": ("1/model.onnx", "config.pbtxt does not match"),
    "labels_not_matching_config": ("labels.txt", "has 3 labels but config.pbtxt declares 'logits' with 5"),
}


@pytest.fixture(scope="module")
def broken(demo_spec: ModelSpec, demo_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo repository plus broken copies of its models and a model that raises, all in one server."""
    root = tmp_path_factory.mktemp("faults")
    repository = root / "repository"
    shutil.copytree(demo_repository, repository)
    tensor = contract.tensor_model(demo_spec.name)
    onnx_bytes = (repository / tensor / "1" / "model.onnx").read_bytes()
    _replace(_clone(repository, tensor, "corrupt_onnx") / "1" / "model.onnx", b"\x08\x07not a protobuf" * 64)
    _replace(
        _clone(repository, tensor, "truncated_onnx") / "1" / "model.onnx", onnx_bytes[: len(onnx_bytes) // 2]
    )
    tokenizer = _clone(repository, contract.tokenizer_model(demo_spec.name), "missing_tokenizer")
    (tokenizer / "1" / "tokenizer.json").unlink()
    _clone(repository, tensor, "config_not_matching_model", _int32_inputs)
    post = _clone(repository, contract.postprocess_model(demo_spec.name), "labels_not_matching_config")
    (post / "labels.txt").write_text("a\nb\nc\n", encoding="utf-8")

    raiser = mc.ModelConfig(name="raiser", backend="python", max_batch_size=8)
    raiser.input.add(name="X", data_type=mc.TYPE_FP32, dims=[2])
    raiser.output.add(name="Y", data_type=mc.TYPE_FP32, dims=[2])
    raiser.dynamic_batching.max_queue_delay_microseconds = 20_000
    (repository / "raiser" / "1").mkdir(parents=True)
    (repository / "raiser" / CONFIG_FILE).write_text(text_format.MessageToString(raiser), encoding="utf-8")
    (repository / "raiser" / "1" / "model.py").write_text(textwrap.dedent(RAISER), encoding="utf-8")

    config = ServerConfig(repository=repository, log_file=root / "triton.log", extra_args=SERVE_WHAT_LOADS)
    with LocalTriton(config) as server:
        yield demo_spec, server, repository


@pytest.mark.parametrize("model", sorted(BROKEN))
def test_broken_model_fails_to_load_naming_the_file(broken, model: str) -> None:
    _, server, repository = broken
    relative, words = BROKEN[model]
    http = httpclient.InferenceServerClient(server.http_url)
    assert not http.is_model_ready(model)
    (state,) = [m for m in http.get_model_repository_index() if m["name"] == model]
    assert state["state"] == "UNAVAILABLE"
    reason = state["reason"]
    assert str(repository / model / relative) in reason and words in reason, reason
    # The local server's start-up report reads the same reasons from the log.
    logged = failed_models(Path(server.config.log_file).read_text(encoding="utf-8", errors="replace"))
    assert str(repository / model / relative) in logged[model]
    with pytest.raises(InferenceServerException):
        http.infer(model, [_text(httpclient, "hello")])


def test_other_models_keep_serving_beside_broken_ones(broken) -> None:
    spec, server, _ = broken
    ready = {
        m["name"]
        for m in httpclient.InferenceServerClient(server.http_url).get_model_repository_index()
        if m.get("state") == "READY"
    }
    assert {spec.name, contract.tensor_model(spec.name), "raiser"} <= ready
    assert not ready & set(BROKEN)
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        result = module.InferenceServerClient(url).infer(spec.name, [_text(module, "where is my order?")])
        assert result.as_numpy(contract.LABELS_OUTPUT).shape == (1, spec.repository.top_k)


def test_python_model_that_raises_fails_that_batch_only_and_keeps_serving(broken) -> None:
    _, server, _ = broken
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def tensor(value: float):
        data = np.full((1, 2), value, np.float32)
        x = grpcclient.InferInput("X", [1, 2], "FP32")
        x.set_data_from_numpy(data)
        return [x]

    with pytest.raises(InferenceServerException, match="poisoned batch: negative input"):
        client.infer("raiser", tensor(-1.0))
    # Many good requests at once, batched together after the failure: every one answered.
    results = []
    done = threading.Event()

    def collect(result, error):
        results.append((result, error))
        if len(results) == 16:
            done.set()

    for i in range(16):
        client.async_infer("raiser", tensor(float(i)), callback=collect)
    assert done.wait(120)
    assert [e for _, e in results if e is not None] == []
    assert sorted(float(r.as_numpy("Y")[0, 0]) for r, _ in results) == [2.0 * i for i in range(16)]
    assert client.is_model_ready("raiser")
    log = Path(server.config.log_file).read_text(encoding="utf-8", errors="replace")
    assert "Stub process" not in log, "the raising model's stub was restarted"
    client.close()


# ------------------------------------------------------------------------------ engines (CPU preflight)


def _engine(version_dir: Path, plan_bytes: bytes, stem: str = "model") -> Path:
    """A plan and its manifest as the repository generator lays them out (model.plan + model.engine.json)."""
    version_dir.mkdir(parents=True, exist_ok=True)
    plan = version_dir / f"{stem}.plan"
    plan.write_bytes(plan_bytes)
    manifest = EngineManifest(
        builder="tensorrt",
        tensorrt_version="10.13.3.9",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        precision="fp16",
        profiles=[ProfileDims(shapes={"input_ids": ([1, 1], [8, 32], [32, 128])})],
        source_onnx="model.onnx",
        source_onnx_sha256="0" * 64,
        engine_sha256=sha256_file(plan),
    )
    (version_dir / f"{stem}.engine.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return plan


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_engine_plan_is_refused_before_triton_starts(tmp_path: Path, damage: str) -> None:
    runtime = RuntimeInfo("10.13.3.9", (GpuInfo("9.0", "NVIDIA H100 80GB HBM3"),), "test", "25.10")
    plan_bytes = os.urandom(256 << 10)
    plan = _engine(tmp_path / "minilm-intent_model" / "1", plan_bytes)
    _engine(tmp_path / "other_model" / "1", plan_bytes)
    assert run_preflight(tmp_path, runtime).engine_count == 2, "generator-named manifests are found"
    damaged = plan_bytes[: len(plan_bytes) // 3] if damage == "truncated" else plan_bytes[:-1] + b"\x00"
    plan.write_bytes(damaged)
    with pytest.raises(EngineMismatchError) as info:
        run_preflight(tmp_path, runtime)
    message = str(info.value)
    assert str(plan) in message and "corrupt or truncated" in message
    assert "other_model" not in message, "only the damaged engine is reported"


# ------------------------------------------------------------------------------ kill and restart


@pytest.fixture(scope="module")
def restartable(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """A server on fixed free ports, so a restart comes back where clients look for it."""
    root = tmp_path_factory.mktemp("restartable")
    config = ServerConfig(
        repository=demo_repository,
        log_file=root / "triton.log",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    with LocalTriton(config) as server:
        yield server, root


def _kill_then_restart(server: LocalTriton, after_s: float, down_s: float) -> threading.Thread:
    def run() -> None:
        time.sleep(after_s)
        os.kill(server.pid, signal.SIGKILL)
        time.sleep(down_s)
        server.stop()  # reaps the killed process and its stubs, frees their shared memory
        server.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_load_test_records_a_killed_server_and_says_what_happened(demo_spec: ModelSpec, restartable) -> None:
    server, root = restartable
    run_dir = root / "loadtest"
    endpoint = Endpoint(
        protocol="http", url=server.http_url, metrics_url=server.metrics_url, http_url=server.http_url
    )
    settings = build_settings(
        demo_spec, Overrides(users=4, duration_s=16, max_requests=50_000), run_dir, endpoint
    )
    restarter = _kill_then_restart(server, after_s=5, down_s=3)
    started = time.monotonic()
    result = run_loadtest(settings, workload_for(demo_spec), demo_spec.loadtest.slo, run_dir)
    elapsed = time.monotonic() - started
    restarter.join(timeout=300)

    assert not result.timed_out and elapsed < wall_clock_limit_s(settings), "the run did not end on its own"
    client = result.client
    assert client.failures > 0 and not result.passed
    assert any("refused" in e.error.lower() or "closed" in e.error.lower() for e in client.errors)
    # Users pause while the server is unreachable instead of spinning on refused connections.
    assert client.failures < client.requests
    summary = write_report(result, run_dir)["summary_md"].read_text(encoding="utf-8")
    assert "## What happened" in summary
    happened = summary.split("## What happened")[1].split("##")[0]
    assert "refused or dropped connections" in happened and "requests succeeded again" in happened, happened


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_retries_idempotent_requests_across_a_restart(
    demo_spec: ModelSpec, restartable, protocol: str
) -> None:
    server, _ = restartable
    url = f"grpc://{server.grpc_url}" if protocol == "grpc" else f"http://{server.http_url}"
    retries = []
    options = ClientOptions(
        retry=RetryPolicy(max_attempts=40, initial_backoff_s=0.2, max_backoff_s=1.0, max_total_s=120)
    )
    with TritonClient(url, options=options, on_retry=retries.append) as client:
        before = client.classify(demo_spec.name, ["where is my order?"])[0]
        restarter = _kill_then_restart(server, after_s=0.0, down_s=2.0)
        time.sleep(0.5)  # the server is down now: the next call must wait for it
        after = client.classify(demo_spec.name, ["where is my order?"])[0]
        restarter.join(timeout=300)
    assert retries, "the call was retried while the server was down"
    assert after.labels == before.labels
    np.testing.assert_allclose(after.scores, before.scores, atol=1e-5)


# ------------------------------------------------------------------------------ the report's account


def _summary(seconds: list[tuple[int, int]], errors: list[tuple[str, int]]):
    from triton_bundle.loadtest.results import ErrorCount, LatencySummary, LocustSummary, SecondBucket

    return LocustSummary(
        started_at=1000.0,
        ended_at=1000.0 + len(seconds),
        stop_reason="duration reached",
        requests=sum(r for r, _ in seconds),
        failures=sum(f for _, f in seconds),
        rps=1.0,
        request_batch_size=1,
        latency=LatencySummary(),
        timeline=[
            SecondBucket(second=1000 + i, requests=r, failures=f, histogram={1.0: r} if r else {})
            for i, (r, f) in enumerate(seconds)
        ],
        errors=[ErrorCount(error=e, occurrences=n) for e, n in errors],
    )


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("[Errno 111] Connection refused", "server unreachable"),
        ("[StatusCode.UNAVAILABLE] in ensemble 'm', Server is stopping,", "server stopping"),
        ("timed out", "timeouts"),
        ("[400] inference request batch-size must be <= 32", "rejected requests"),
    ],
)
def test_incidents_name_the_stretch_and_the_cause(error: str, cause: str) -> None:
    from triton_bundle.loadtest.incidents import find_incidents

    # 4 good seconds, 3 failing, 1 without completions (users pausing), then good again.
    seconds = [(10, 0)] * 4 + [(8, 8), (2, 2), (3, 2)] + [(0, 0)] + [(10, 0)] * 3
    (incident,) = find_incidents(_summary(seconds, [(error, 12)]))
    assert (incident.start_s, incident.end_s) == (4.0, 8.0)
    assert (incident.requests, incident.failures) == (13, 12) and incident.cause == cause
    # Still failing when the run ended: no recovery is claimed.
    (open_ended,) = find_incidents(_summary([(10, 0), (5, 5), (0, 0)], [(error, 5)]))
    assert open_ended.end_s is None and "end of the run" in open_ended.describe()
    assert find_incidents(_summary([(10, 0), (10, 1)], [(error, 1)])) == []
