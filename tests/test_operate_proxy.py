"""The authenticating proxy (docker/proxy: nginx, rendered by start.sh) in front of a real local Triton.

Debian's nginx runs the same template and script as the container (installed by `make install-system`).
Without the bearer token: 401 over HTTP and UNAUTHENTICATED over gRPC; with it, the bundle's client
(which reads TRITON_BEARER_TOKEN_FILE) and a gRPC stream work; health probes stay open; neither the
token nor a request's text reaches the proxy's log.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from triton_bundle.client import TritonClient
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, loadtest_stage
from triton_bundle.net import free_port
from triton_bundle.processes import stop_process_group
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import SLOSpec, load_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "docker" / "proxy" / "start.sh"
FIXTURES = Path(__file__).parent / "fixtures" / "client_models"
MARKER = "proxy-marker-7f3c payload text"


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    if found is None:
        pytest.skip(
            "nginx is not installed: `make install-system` (apt-get install nginx-light) puts it there"
        )
    return found


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("proxy")
    shutil.copytree(FIXTURES, root / "repo", ignore=shutil.ignore_patterns("__pycache__"))
    with LocalTriton(ServerConfig(repository=root / "repo", log_file=root / "triton.log")) as server:
        yield server


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the proxy exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"the proxy did not listen on {port}:\n{log.read_text()}")


def _env(run_dir: Path, token_file: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "TRITON_BEARER_TOKEN_FILE": str(token_file),
        "PROXY_RUN_DIR": str(run_dir),
        "PROXY_LISTEN": "127.0.0.1",
        **extra,
    }


@pytest.fixture(scope="module")
def proxy(echo_server: LocalTriton, tmp_path_factory: pytest.TempPathFactory):
    """nginx on free ports, stopped by PID; yields (http address, grpc address, token, log file)."""
    nginx = _nginx()
    root = tmp_path_factory.mktemp("proxy-run")
    token, retired = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    token_file = root / "tokens"
    token_file.write_text(f"# the old token stays valid during a rotation\n{retired}\n{token}\n")
    http_port, grpc_port = free_port(), free_port()
    env = _env(
        root / "run",
        token_file,
        NGINX=nginx,
        PROXY_HTTP_PORT=str(http_port),
        PROXY_GRPC_PORT=str(grpc_port),
        TRITON_HTTP_UPSTREAM=echo_server.http_url,
        TRITON_GRPC_UPSTREAM=echo_server.grpc_url,
    )
    log = root / "proxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(START)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_port(http_port, process, log)
        _wait_for_port(grpc_port, process, log)
        yield f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", token, retired, log
    finally:
        stop_process_group(process, grace_s=10)


def _get(
    url: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_http_needs_the_token_except_for_health(proxy) -> None:
    http, _, token, _, _ = proxy
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert _get(f"http://{http}{path}")[0] == 200, path
    status, headers, body = _get(f"http://{http}/v2/models/echo_text")
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert b"bearer token" in body
    assert (
        _get(f"http://{http}/v2/models/echo_text", {"Authorization": "Bearer wrong-token-0123456789"})[0]
        == 401
    )
    assert _get(f"http://{http}/v2/models/echo_text", {"Authorization": token})[0] == 401  # no scheme
    status, _, body = _get(f"http://{http}/v2/models/echo_text", {"Authorization": f"Bearer {token}"})
    assert status == 200 and b'"name":"echo_text"' in body
    # A raw inference without the token is refused before Triton sees it.
    infer = b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["x"]}]}'
    assert _get(f"http://{http}/v2/models/echo_text/infer", data=infer)[0] == 401


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_bundle_client_sends_the_token_from_the_environment(
    proxy, protocol: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    http, grpc, token, retired, _ = proxy
    url = f"{protocol}://{http if protocol == 'http' else grpc}"
    monkeypatch.delenv("TRITON_BEARER_TOKEN", raising=False)
    secret = tmp_path / "token"
    for accepted in (token, retired):  # both sides of a rotation
        secret.write_text(f"{accepted}\n")
        monkeypatch.setenv("TRITON_BEARER_TOKEN_FILE", str(secret))
        with TritonClient(url) as client:
            assert client.is_ready()
            results = client.classify("echo_text", [MARKER, "second text"])
            assert [r.labels[0] for r in results] == [MARKER, "second text"]
            embeddings = client.embed("echo_embed", ["a", "bb"])
            assert np.asarray(embeddings.vectors).shape[0] == 2
    monkeypatch.delenv("TRITON_BEARER_TOKEN_FILE")
    with TritonClient(url) as client:
        assert client.is_live()  # health stays open
        with pytest.raises(Exception, match=r"(?i)401|unauth"):
            client.classify("echo_text", ["no token"])


def test_grpc_without_token_is_unauthenticated_and_streams_pass_with_it(proxy) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    _, grpc, token, _, _ = proxy
    client = grpcclient.InferenceServerClient(grpc)
    try:
        assert client.is_server_live() and client.is_server_ready()
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_metadata("echo_text")
        assert "UNAUTHENTICATED" in str(refused.value.status()) + str(refused.value)

        answers: queue.Queue = queue.Queue()
        client.start_stream(
            callback=lambda result, error: answers.put((result, error)),
            headers={"authorization": f"Bearer {token}"},
        )
        for i in range(5):
            text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            text.set_data_from_numpy(np.array([[f"stream {i}".encode()]], dtype=object))
            client.async_stream_infer("echo_text", [text], request_id=str(i))
        got = [answers.get(timeout=20) for _ in range(5)]
        client.stop_stream()
        assert all(error is None for _, error in got), got
        assert sorted(r.as_numpy("LABELS")[0][0] for r, _ in got) == [
            f"stream {i}".encode() for i in range(5)
        ]
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_test_users_send_the_token_through_the_proxy(
    proxy, protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locust's users (prepared HTTP bodies, a shared gRPC channel) carry the token: no request refused."""
    http, grpc, token, _, _ = proxy
    monkeypatch.setenv("TRITON_BEARER_TOKEN", token)
    spec = load_spec(Path(__file__).parent / "fixtures" / "loadtest_spec" / "spec.yaml")
    endpoint = Endpoint(protocol=protocol, url=http if protocol == "http" else grpc, http_url=http)
    result = loadtest_stage(
        spec,
        tmp_path / "work",
        Overrides(model="echo_text", users=2, duration_s=2, max_requests=200),
        endpoint=endpoint,
        slo=SLOSpec(max_error_rate=0.0),
    )
    assert result.client.requests > 0 and result.client.failures == 0, result.client.errors
    reports = [p for p in (tmp_path / "work").rglob("*") if p.is_file()]
    assert reports and all(token not in p.read_text(errors="replace") for p in reports)


def test_the_proxy_log_holds_neither_token_nor_payload(proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    http, _, token, _, log = proxy
    monkeypatch.setenv("TRITON_BEARER_TOKEN", token)
    with TritonClient(f"http://{http}") as client:
        client.classify("echo_text", [MARKER])
    time.sleep(0.3)  # nginx writes its access log line after the response
    text = log.read_text(errors="replace")
    assert "/v2/models/echo_text/infer" in text  # requests are logged...
    assert token not in text and MARKER not in text  # ...without their secrets or contents


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (None, "no token file"),
        ("# only a comment\n\n", "holds no token"),
        ("short\n", "shorter than 16"),
        ('bad"token;with-quotes-1234\n', "may only contain"),
    ],
)
def test_start_refuses_to_run_an_open_or_broken_proxy(
    tmp_path: Path, tokens: str | None, message: str
) -> None:
    token_file = tmp_path / "tokens"
    if tokens is not None:
        token_file.write_text(tokens)
    # NGINX=false: if the checks let it through, the "server" would exit 1, not 2.
    result = subprocess.run(
        [str(START)],
        env=_env(tmp_path / "run", token_file, NGINX="false"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
