"""The client against a real local Triton serving small Python-backend models (tests/fixtures/client_models)
that follow the ensemble's tensor contract and echo their input, so order and versions are checkable.

Covers both protocols, sync and asyncio: order under client batching + concurrency, client-side input
rejection, no retries on invalid arguments, a retry across a server restart, a new model version picked
up, shared memory, statistics, and the `infer` / `stats` commands.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from triton_bundle.client.cli import infer_command, stats_command
from triton_bundle.client.client import AsyncTritonClient, ClientOptions, TritonClient
from triton_bundle.client.errors import InvalidInputError, ServerRejectedError
from triton_bundle.client.retry import RetryPolicy
from triton_bundle.client.shm import registered, stage_inputs
from triton_bundle.client.transport import SyncTransport
from triton_bundle.net import free_port
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures" / "client_models"
ECHO_MAX_BATCH = 4  # echo_text's max_batch_size: every request above it must be split by the client
TEXTS = [f"message {i:03d} " + "é" * (i % 5) for i in range(41)]
PROTOCOLS = ["http", "grpc"]


def _copy_models(repo: Path) -> Path:
    shutil.copytree(FIXTURES, repo, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory):
    """One Triton for the module; explicit model control so tests can load new models and versions."""
    root = tmp_path_factory.mktemp("client")
    config = ServerConfig(
        repository=_copy_models(root / "repo"),
        log_file=root / "triton.log",
        model_control_mode="explicit",
        extra_args=["--load-model=*"],
    )
    with LocalTriton(config) as server:
        yield server


def _url(server: LocalTriton, protocol: str) -> str:
    return f"{protocol}://{server.http_url if protocol == 'http' else server.grpc_url}"


def _echoed(results) -> list[str]:
    return [r.labels[0] for r in results]


def _counts(client: TritonClient, model: str) -> tuple[int, int]:
    """(requests, inferences) the server has recorded for a model."""
    stats = client.statistics(model)
    return sum(s.request_count for s in stats), sum(s.inference_count for s in stats)


def _settled_counts(client: TritonClient, model: str, min_inferences: int = 0) -> tuple[int, int]:
    """Triton records a request's statistics when it releases the request, which can be just after the
    response arrived: read until the counts reach `min_inferences` and stop moving (bounded)."""
    deadline = time.monotonic() + 10
    previous = _counts(client, model)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        current = _counts(client, model)
        if current == previous and current[1] >= min_inferences:
            return current
        previous = current
    return previous


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_order_is_kept_under_client_batching_and_concurrency(echo_server, protocol) -> None:
    options = ClientOptions(concurrency=4)
    with TritonClient(_url(echo_server, protocol), options=options) as client:
        assert client.is_live() and client.is_ready() and client.is_model_ready("echo_text")
        requests_before, inferences_before = _settled_counts(client, "echo_text")
        results = client.classify("echo_text", TEXTS, probabilities=True)
        requests_after, _ = _settled_counts(client, "echo_text", inferences_before + len(TEXTS))
        sent = requests_after - requests_before

    assert _echoed(results) == TEXTS
    assert [r.text for r in results] == TEXTS
    assert all(r.model_version == "1" and r.probabilities is not None for r in results)
    # Each request carried at most max_batch_size rows, so there were at least this many.
    assert sent >= -(-len(TEXTS) // ECHO_MAX_BATCH)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_client_keeps_order_across_concurrent_calls(echo_server, protocol) -> None:
    async def run():
        async with AsyncTritonClient(
            _url(echo_server, protocol), options=ClientOptions(concurrency=3)
        ) as client:
            assert await client.is_ready()
            calls = [client.classify("echo_text", TEXTS[i:]) for i in range(0, 12, 3)]
            embeds = client.embed("echo_embed", TEXTS)
            return await asyncio.gather(*calls), await embeds, await client.list_models()

    batches, embeddings, models = asyncio.run(run())
    for start, results in zip(range(0, 12, 3), batches, strict=True):
        assert _echoed(results) == TEXTS[start:]
    # echo_embed: [len(utf-8 bytes), first byte, version] per text
    expected = [[len(t.encode()), t.encode()[0], 1] for t in TEXTS]
    np.testing.assert_array_equal(embeddings.vectors, np.array(expected, dtype=np.float32))
    assert {m.name for m in models} >= {"echo_text", "echo_embed", "echo_image"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_input_is_rejected_client_side_before_sending(echo_server, protocol) -> None:
    with TritonClient(_url(echo_server, protocol)) as client:
        before = _settled_counts(client, "echo_text")
        with pytest.raises(InvalidInputError) as err:
            client.infer_tensors("echo_text", {"TEXT": np.zeros((2, 1), dtype=np.float32)})
        assert "input 'TEXT' expects BYTES, got FP32" in str(err.value)
        with pytest.raises(InvalidInputError, match=r"unknown input\(s\) TXT \(the model takes: TEXT\)"):
            client.infer_tensors("echo_text", {"TXT": np.array([[b"x"]], dtype=object)})
        with pytest.raises(InvalidInputError, match=r"expects 2 dims \[-1, 1\]"):
            client.infer_tensors("echo_text", {"TEXT": np.array([b"x"], dtype=object)})
        with pytest.raises(InvalidInputError, match="no LABELS, SCORES output for classification"):
            client.classify("echo_embed", ["x"])
        assert _counts(client, "echo_text") == before, "nothing reached the server"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_side_invalid_argument_is_not_retried(echo_server, protocol) -> None:
    options = ClientOptions(validate_inputs=False)
    with TritonClient(_url(echo_server, protocol), options=options) as client:
        with pytest.raises(
            ServerRejectedError, match="data-type is 'FP32', but model 'echo_text' expects 'BYTES'"
        ):
            client.infer_tensors("echo_text", {"TEXT": np.zeros((2, 1), dtype=np.float32)})
        with pytest.raises(
            ServerRejectedError, match=r"'nope' is not served at .* \(ready models: .*echo_text"
        ):
            client.classify("nope", ["x"])
        assert client.retry_count == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shared_memory_inputs_give_the_same_results(echo_server, protocol) -> None:
    url = _url(echo_server, protocol)
    with TritonClient(url, options=ClientOptions(shm_threshold_bytes=0)) as client:
        via_shm = client.classify("echo_text", TEXTS)
        vectors = client.embed("echo_embed", TEXTS).vectors
    with TritonClient(url) as client:
        assert [r.model_dump() for r in via_shm] == [
            r.model_dump() for r in client.classify("echo_text", TEXTS)
        ]
        np.testing.assert_array_equal(vectors, client.embed("echo_embed", TEXTS).vectors)

    # The region is really registered with the server for the request, and gone afterwards.
    transport = SyncTransport(client.endpoint, timeout_s=10)
    raw = transport._client
    status = (
        (lambda: raw.get_system_shared_memory_status(as_json=True))
        if protocol == "grpc"
        else (raw.get_system_shared_memory_status)
    )
    staged = stage_inputs({"TEXT": np.array([[b"abc"], [b"de"]], dtype=object)}, {"TEXT"})
    try:
        with registered(transport, staged) as payloads:
            assert staged.region in json.dumps(status())
            result = transport.infer("echo_text", payloads, ["LABELS"])
        assert staged.region not in json.dumps(status())
    finally:
        staged.destroy()
        transport.close()
    assert result.outputs["LABELS"][:, 0].tolist() == [b"abc", b"de"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_classify_images_from_paths_and_arrays(echo_server, protocol, tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (9, 4), (255, 255, 255)).save(path)
    images = [np.zeros((5, 7, 3), dtype=np.uint8), path, np.full((2, 3, 3), 255, dtype=np.uint8)] * 3
    with TritonClient(_url(echo_server, protocol)) as client:
        results = client.classify_images("echo_image", images)
    assert [r.labels[0] for r in results] == ["7x5", "9x4", "3x2"] * 3
    assert [r.source for r in results][:3] == ["array[0]", str(path), "array[2]"]
    assert [r.scores[0] for r in results][:3] == pytest.approx([0.0, 1.0, 1.0])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_statistics_show_the_batches_the_server_formed(echo_server, protocol) -> None:
    with TritonClient(_url(echo_server, protocol), options=ClientOptions(concurrency=1)) as client:
        client.embed("echo_embed", TEXTS[:8])
        (stats,) = client.statistics("echo_embed")
    assert stats.name == "echo_embed" and stats.request_count >= 1
    assert stats.inference_count >= 8 and stats.execution_count >= 1
    assert 1 <= stats.average_batch_size <= 8
    assert sum(size * count for size, count in stats.batches_formed.items()) == stats.inference_count
    assert stats.inference_stats.queue.avg_us is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_new_model_version_loaded_by_the_server_is_picked_up(echo_server, protocol) -> None:
    repo = Path(echo_server.config.repository)
    name = f"echo_versions_{protocol}"
    model_dir = repo / name
    shutil.copytree(repo / "echo_text", model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    config = model_dir / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "echo_text"', f'name: "{name}"'))
    with TritonClient(_url(echo_server, protocol)) as client:
        client.load_model(name)
        first = client.classify(name, TEXTS[:6])
        assert {(r.model_version, r.labels[1]) for r in first} == {("1", "v1")}

        shutil.copytree(model_dir / "1", model_dir / "2", ignore=shutil.ignore_patterns("__pycache__"))
        # Someone else (an operator, a deploy job) loads the new version; this client is not told.
        with TritonClient(_url(echo_server, protocol)) as operator:
            operator.load_model(name)

        second = client.classify(name, TEXTS[:6])
        assert {(r.model_version, r.labels[1]) for r in second} == {("2", "v2")}
        assert _echoed(second) == TEXTS[:6]
        assert client.model_metadata(name, refresh=True).versions == ["2"]


def test_requests_in_flight_during_a_server_restart_succeed(tmp_path: Path) -> None:
    # Same ports after the restart, so the clients' URLs stay valid; one light model so it starts fast;
    # a short stop timeout because Triton otherwise waits out its exit timeout for the open connections.
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    repo = tmp_path / "repo"
    shutil.copytree(
        FIXTURES / "echo_embed", repo / "echo_embed", ignore=shutil.ignore_patterns("__pycache__")
    )
    config = ServerConfig(repository=repo, log_file=tmp_path / "triton.log", stop_timeout_s=2, **ports)
    retry = RetryPolicy(max_attempts=100, initial_backoff_s=0.05, max_backoff_s=0.5, max_total_s=90)
    options = ClientOptions(retry=retry, concurrency=2, timeout_s=30)
    outcome: dict[str, object] = {}

    def run_sync(key: str, client: TritonClient) -> None:
        try:
            outcome[key] = client.embed("echo_embed", TEXTS)
        except Exception as exc:  # surfaced by the assertions below
            outcome[key] = exc
        finally:
            client.close()

    def run_async(key: str, client: AsyncTritonClient) -> None:
        async def go():
            try:
                return await client.embed("echo_embed", TEXTS)
            finally:
                await client.close()

        try:
            outcome[key] = asyncio.run(go())
        except Exception as exc:
            outcome[key] = exc

    with LocalTriton(config) as server:
        clients: dict[str, TritonClient | AsyncTritonClient] = {}
        for protocol in PROTOCOLS:
            clients[f"{protocol}-sync"] = TritonClient(_url(server, protocol), options=options)
            clients[f"{protocol}-async"] = AsyncTritonClient(_url(server, protocol), options=options)
            # Connected, metadata cached, before the restart.
            expected = clients[f"{protocol}-sync"].embed("echo_embed", TEXTS).vectors

        server.stop()
        workers = [
            threading.Thread(
                target=run_sync if isinstance(client, TritonClient) else run_async, args=(key, client)
            )
            for key, client in clients.items()
        ]
        for worker in workers:
            worker.start()
        # Restart only once every client has hit the dead server and started retrying.
        deadline = time.monotonic() + 30
        while any(c.retry_count == 0 for c in clients.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(c.retry_count > 0 for c in clients.values())
        server.start()
        for worker in workers:
            worker.join(timeout=90)

    for key in clients:
        result = outcome[key]
        assert not isinstance(result, Exception), f"{key}: {result!r}"
        np.testing.assert_array_equal(result.vectors, expected)
        assert result.texts == TEXTS


# --------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.command("infer")(infer_command)
    app.command("stats")(stats_command)
    return app


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_infer_command_reads_files_and_writes_json_lines_in_order(
    echo_server, cli_app, protocol, tmp_path: Path
) -> None:
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)), encoding="utf-8"
    )
    address = echo_server.http_url if protocol == "http" else echo_server.grpc_url
    runner = CliRunner()
    common = ["--url", address, "--protocol", protocol, "--model", "echo_text", "--batch-size", "7"]
    result = runner.invoke(cli_app, ["infer", "--file", str(jsonl), *common])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == TEXTS
    assert [row["labels"][0] for row in rows] == TEXTS
    assert all(len(row["scores"]) == 2 for row in rows)

    csv_file = tmp_path / "in.csv"
    csv_file.write_text('id,body\n1,"hello, world"\n2,second\n', encoding="utf-8")
    result = runner.invoke(cli_app, ["infer", "-f", str(csv_file), "--field", "body", *common])
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["hello, world", "second"]

    result = runner.invoke(
        cli_app, ["infer", "--url", address, "-p", protocol, "-m", "echo_embed"], input="alpha\n\nbeta\n"
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == ["alpha", "beta"]
    assert [row["embedding"][0] for row in rows] == [5.0, 4.0]


def test_infer_command_errors_go_to_stderr_not_stdout(echo_server, cli_app) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli_app,
        ["infer", "--url", echo_server.http_url, "-m", "echo_text", "--format", "jsonl"],
        input='{"txt": 1}\n',
    )
    assert result.exit_code != 0
    assert result.stdout == ""
    assert "expected a JSON string or an object with a string 'text' field" in str(result.exception)


def test_stats_command_prints_a_table_per_model(echo_server, cli_app) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["stats", "--url", f"grpc://{echo_server.grpc_url}"])
    assert result.exit_code == 0, result.output
    assert "echo_text" in result.stdout and "avg batch" in result.stdout and "queue µs" in result.stdout
    result = runner.invoke(cli_app, ["stats", "echo_embed", "--url", echo_server.http_url, "--json"])
    (row,) = json.loads(result.stdout)
    assert row["name"] == "echo_embed" and row["average_batch_size"] is not None
