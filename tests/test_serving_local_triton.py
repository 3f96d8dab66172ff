"""The local Triton: real tritonserver binary from the nvidia-pytriton wheel, real Python backend."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.serving import triton_install
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig, TritonStartupError
from triton_bundle.serving.triton_install import TritonNotInstalledError, prepare_triton

# A Python model that reports the interpreter environment its stub embeds: the imports prove the python
# models see this venv's numpy / tokenizers / onnxruntime.
PROBE_MODEL = """
import json, sys
import numpy as np
import onnxruntime
import tokenizers
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.info = json.dumps({"prefix": sys.prefix, "numpy": np.__file__, "ort": onnxruntime.__file__})

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            info = np.array([[self.info.encode()]] * x.shape[0], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2), pb_utils.Tensor("INFO", info)]))
        return responses
"""


def _write_model(repo: Path, name: str, source: str) -> None:
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=8)
    config.input.add(name="X", data_type=mc.TYPE_FP32, dims=[2])
    config.output.add(name="Y", data_type=mc.TYPE_FP32, dims=[2])
    config.output.add(name="INFO", data_type=mc.TYPE_STRING, dims=[1])
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(text_format.MessageToString(config), encoding="utf-8")
    (repo / name / "1" / "model.py").write_text(textwrap.dedent(source), encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


@pytest.fixture(scope="module")
def probe_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("serving") / "repo"
    _write_model(repo, "probe", PROBE_MODEL)
    return repo


@pytest.mark.slow
def test_two_servers_serve_http_and_grpc_then_stop_cleanly(
    probe_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Launched from an unrelated cwd: the stub must still find this venv.
    monkeypatch.chdir(tmp_path)
    configs = [ServerConfig(repository=probe_repo, log_file=tmp_path / f"triton{i}.log") for i in range(2)]
    with LocalTriton(configs[0]) as first, LocalTriton(configs[1]) as second:
        urls = {first.http_url, first.grpc_url, first.metrics_url, second.http_url, second.grpc_url}
        assert len(urls) == 5, "every endpoint gets its own free port"
        assert all(url.startswith("127.0.0.1:") for url in urls)
        stubs = _children(first.pid)
        assert stubs, "the Python backend stub runs as a child of tritonserver"

        x = np.array([[1.0, 2.0]], dtype=np.float32)
        http = httpclient.InferenceServerClient(first.http_url)
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = http.infer("probe", [inp])
        np.testing.assert_array_equal(result.as_numpy("Y"), x * 2)
        info = json.loads(result.as_numpy("INFO")[0][0])
        assert Path(info["prefix"]).resolve() == Path(sys.prefix).resolve()
        assert Path(info["ort"]).resolve().is_relative_to(Path(sys.prefix).resolve())

        grpc = grpcclient.InferenceServerClient(second.grpc_url)
        ginp = grpcclient.InferInput("X", list(x.shape), "FP32")
        ginp.set_data_from_numpy(x)
        np.testing.assert_array_equal(grpc.infer("probe", [ginp]).as_numpy("Y"), x * 2)
        assert "nv_inference_request_success" in _get(f"http://{first.metrics_url}/metrics")
        pid, prefix = first.pid, first._shm_prefix
        assert list(Path("/dev/shm").glob(f"{prefix}*")), "the server's shm regions carry its own prefix"

    time.sleep(0.2)
    assert not _alive(pid)
    assert not any(_alive(stub) for stub in stubs)
    assert not list(Path("/dev/shm").glob(f"{prefix}*"))
    assert "successfully loaded 'probe'" in configs[0].log_file.read_text()


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.mark.slow
def test_model_that_fails_to_load_is_named_in_the_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write_model(repo, "broken", "import a_module_that_does_not_exist\n")
    server = LocalTriton(ServerConfig(repository=repo, log_file=tmp_path / "triton.log"))
    with pytest.raises(TritonStartupError) as err:
        server.start()
    message = str(err.value)
    assert "broken: " in message and "a_module_that_does_not_exist" in message
    assert "exited with code" in message
    assert not server.is_running()


@pytest.mark.slow
def test_not_ready_in_time_stops_the_server(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    slow = PROBE_MODEL.replace(
        "def initialize(self, args):", "def initialize(self, args):\n        import time; time.sleep(60)"
    )
    _write_model(repo, "slow", slow)
    server = LocalTriton(ServerConfig(repository=repo, log_file=tmp_path / "triton.log", ready_timeout_s=3))
    with pytest.raises(TritonStartupError, match="not ready after 3 s"):
        server.start()
    time.sleep(0.2)
    assert not _alive(server.pid)


def test_missing_binary_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triton_install, "_pytriton_dist_dir", lambda: tmp_path / "tritonserver")
    with pytest.raises(TritonNotInstalledError, match=r"pip install nvidia-pytriton==0\.7\.0"):
        prepare_triton(tmp_path / "cache")


def test_missing_repository_is_reported_before_starting(tmp_path: Path) -> None:
    with pytest.raises(TritonStartupError, match="does not exist"):
        LocalTriton(ServerConfig(repository=tmp_path / "nope", log_file=tmp_path / "log")).start()


def test_concurrent_prepare_yields_one_complete_tree(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        installs = list(pool.map(lambda _: prepare_triton(cache), range(4)))
    assert len({inst.root for inst in installs}) == 1
    root = installs[0].root
    stub = root / "backends" / "python" / "triton_python_backend_stub"
    assert os.access(installs[0].binary, os.X_OK) and os.access(stub, os.X_OK)
    assert [p.name for p in cache.iterdir()] == [root.name], "no staging directories are left behind"


@pytest.mark.slow
def test_serve_cli_stops_triton_on_sigterm(probe_repo: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: probe\ntask: text-classification\nsource: {path: ckpt}\ndata: {eval: eval.jsonl}\n",
        encoding="utf-8",
    )
    log = tmp_path / "serve.log"
    cmd = [
        sys.executable,
        "-c",
        "import typer; from triton_bundle.serving.cli import serve; typer.run(serve)",
        str(spec),
        f"--repository={probe_repo}",
        f"--workdir={tmp_path / 'work'}",
        f"--log-file={log}",
        "--http-port=0",
        "--grpc-port=0",
        "--metrics-port=0",
    ]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "http://127.0.0.1:" in output, output
        triton_pids = _children(proc.pid)
        assert triton_pids
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    assert not any(_alive(pid) for pid in triton_pids)


def test_repository_for_another_backend_is_refused_before_starting(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "engine" / "1").mkdir(parents=True)
    config = mc.ModelConfig(name="engine", platform="tensorrt_plan", max_batch_size=8)
    (repo / "engine" / "config.pbtxt").write_text(text_format.MessageToString(config), encoding="utf-8")
    server = LocalTriton(ServerConfig(repository=repo, log_file=tmp_path / "triton.log"))
    with pytest.raises(TritonStartupError, match=r"engine \(tensorrt_plan\).*--target local"):
        server.start()
    assert not server.is_running() and not (tmp_path / "triton.log").exists()
