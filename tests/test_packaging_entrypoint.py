"""The Triton image's entrypoint: preflight first, then tritonserver with the admin APIs behind a key.

The script runs here as it runs in the container (bash + this interpreter as python3); a stand-in
server records how it was exec'd. The slow test starts the real Triton (the pytriton wheel's 2.51)
with exactly the restricted-API flags the entrypoint writes and checks what they lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from triton_bundle.engine.manifest import EngineManifest, ProfileDims

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "docker" / "triton" / "entrypoint.sh"
ADMIN_HEADER = "triton-admin-key"


def _entrypoint(
    repo: Path | str, tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str] | None]:
    """Run the entrypoint with a stand-in tritonserver; returns the result and the args it was exec'd with."""
    record = tmp_path / "exec.json"
    record.unlink(missing_ok=True)
    fake = tmp_path / "fake-tritonserver"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRITON", "MODEL_", "ENTRYPOINT"))}
    full_env = {
        **base,
        "MODEL_REPOSITORY": str(repo),
        "TRITONSERVER": str(fake),
        "PYTHON": sys.executable,
        "TRITON_ADMIN_KEY_FILE": str(tmp_path / "no-such-secret"),
        "COLUMNS": "200",
        **env,
    }
    result = subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        check=False,
    )
    exec_args = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
    return result, exec_args


def _option(args: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    return value


def _engine(repo: Path, tensorrt_version: str = "10.13.3.9", cc: str = "9.0") -> Path:
    directory = repo / "minilm-intent_model" / "1"
    directory.mkdir(parents=True)
    (directory / "model.plan").write_bytes(b"plan")
    manifest = EngineManifest(
        builder="tensorrt",
        tensorrt_version=tensorrt_version,
        compute_capability=cc,
        gpu_name="NVIDIA H100 80GB HBM3",
        precision="fp16",
        profiles=[ProfileDims(shapes={"input_ids": ([1, 1], [8, 32], [32, 128])})],
        source_onnx="model.onnx",
        source_onnx_sha256="0" * 64,
    )
    path = directory / "engine.json"
    path.write_text(manifest.model_dump_json(), encoding="utf-8")
    return path


def test_key_from_secret_file_restricts_admin_apis_on_both_protocols(tmp_path: Path) -> None:
    secret = tmp_path / "triton_admin_key"
    secret.write_text("s3cret-value\n", encoding="utf-8")
    result, args = _entrypoint(
        tmp_path, tmp_path, "--exit-timeout-secs=45", TRITON_ADMIN_KEY_FILE=str(secret)
    )
    assert result.returncode == 0, result.stderr
    assert args is not None and args[-1] == "--exit-timeout-secs=45"  # extra arguments reach tritonserver
    assert _option(args, "--model-repository") == str(tmp_path)
    assert _option(args, "--model-control-mode") == "none"
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        apis, _, key = _option(args, flag).partition(":")
        assert key == f"{ADMIN_HEADER}=s3cret-value"
        assert {"model-repository", "shared-memory", "statistics"} <= set(apis.split(","))
        assert not {"health", "inference", "metadata"} & set(apis.split(","))  # probes and clients stay open


def test_without_a_key_the_admin_apis_are_locked_with_a_random_one(tmp_path: Path) -> None:
    first, args1 = _entrypoint(tmp_path, tmp_path)
    _, args2 = _entrypoint(tmp_path, tmp_path)
    assert first.returncode == 0 and "admin APIs are locked" in first.stderr
    assert args1 is not None and args2 is not None
    key1 = _option(args1, "--http-restricted-api").split("=", 1)[1]
    key2 = _option(args2, "--http-restricted-api").split("=", 1)[1]
    assert len(key1) == 64 and key1 != key2


def test_env_key_dry_run_and_refusals(tmp_path: Path) -> None:
    dry, args = _entrypoint(tmp_path, tmp_path, TRITON_ADMIN_KEY="k-1", ENTRYPOINT_DRY_RUN="1")
    assert dry.returncode == 0 and args is None  # printed, not exec'd
    assert (
        f"--http-restricted-api=model-repository,shared-memory,statistics,trace,logging:{ADMIN_HEADER}=k-1"
        in (dry.stdout.splitlines())
    )
    poll, args = _entrypoint(tmp_path, tmp_path, MODEL_CONTROL_MODE="poll")
    assert poll.returncode == 2 and args is None and "expected 'none' or 'explicit'" in poll.stderr
    bad, args = _entrypoint(tmp_path, tmp_path, TRITON_ADMIN_KEY="a,b:c=d")
    assert bad.returncode == 2 and args is None and "may only contain" in bad.stderr


def test_mismatched_engine_stops_the_start_before_tritonserver(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    engine = _engine(repo, tensorrt_version="10.8.0.43")
    result, args = _entrypoint(
        repo, tmp_path, TRITON_BUNDLE_TENSORRT_VERSION="10.13.3.9", TRITON_BUNDLE_COMPUTE_CAPABILITY="9.0"
    )
    assert result.returncode == 2 and args is None
    assert "refusing to serve" in result.stderr and str(engine) in result.stderr
    assert "Traceback" not in result.stderr


def test_matching_engine_starts_tritonserver(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    _engine(repo)
    result, args = _entrypoint(
        repo, tmp_path, TRITON_BUNDLE_TENSORRT_VERSION="10.13.3.9", TRITON_BUNDLE_COMPUTE_CAPABILITY="9.0"
    )
    assert result.returncode == 0, result.stderr
    assert args is not None and "preflight passed" in result.stderr


def test_object_storage_repository_skips_preflight_and_says_so(tmp_path: Path) -> None:
    result, args = _entrypoint("s3://bucket/models", tmp_path)
    assert result.returncode == 0 and "preflight: skipped" in result.stderr
    assert args is not None and _option(args, "--model-repository") == "s3://bucket/models"


# ------------------------------------------------------------------------------ the real server


def _status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        url, method=method, headers=headers or {}, data=b"{}" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_real_triton_enforces_the_entrypoint_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pytriton", reason="the local Triton comes from nvidia-pytriton")
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    repo = tmp_path / "models"
    repo.mkdir()
    dry, _ = _entrypoint(repo, tmp_path, TRITON_ADMIN_KEY="k3y-for-test", ENTRYPOINT_DRY_RUN="1")
    restricted = [a for a in dry.stdout.splitlines() if "-restricted-" in a]
    assert len(restricted) == 2
    config = ServerConfig(repository=repo, log_file=tmp_path / "triton.log", extra_args=restricted)
    with LocalTriton(config) as server:
        base = f"http://{server.http_url}"
        key = {ADMIN_HEADER: "k3y-for-test"}
        assert _status(f"{base}/v2/health/ready") == 200  # probes need no key
        assert _status(f"{base}/v2") == 200  # server metadata stays open
        for method, path in (
            ("POST", "/v2/repository/index"),
            ("GET", "/v2/models/stats"),
            ("GET", "/v2/systemsharedmemory/status"),
            ("GET", "/v2/logging"),
        ):
            assert _status(base + path, method) == 403, path
            assert _status(base + path, method, {ADMIN_HEADER: "wrong"}) == 403, path
            assert _status(base + path, method, key) == 200, path
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            assert client.is_server_ready()
            with pytest.raises(InferenceServerException):
                client.get_model_repository_index()
            index = client.get_model_repository_index(
                headers={f"triton-grpc-protocol-{ADMIN_HEADER}": "k3y-for-test"}
            )
            assert list(index.models) == []
        finally:
            client.close()

        # The bundle's own client and load-test scraper send the key from the environment (a secret).
        from triton_bundle.client import TritonClient
        from triton_bundle.client.errors import ClientError
        from triton_bundle.loadtest.metrics_scraper import _get

        for url, protocol in ((server.http_url, "http"), (server.grpc_url, "grpc")):
            monkeypatch.delenv("TRITON_ADMIN_KEY", raising=False)
            with TritonClient(url, protocol) as bundle_client, pytest.raises(ClientError):
                bundle_client.statistics()
            key_file = tmp_path / "admin-key"
            key_file.write_text("k3y-for-test\n")
            monkeypatch.setenv("TRITON_ADMIN_KEY_FILE", str(key_file))
            with TritonClient(url, protocol) as bundle_client:
                assert bundle_client.statistics() == []  # allowed: no models in this repository
                assert bundle_client.list_models() == []
            monkeypatch.delenv("TRITON_ADMIN_KEY_FILE")
        monkeypatch.setenv("TRITON_ADMIN_KEY", "k3y-for-test")
        assert b"model_stats" in _get(f"{base}/v2/models/stats")


# ------------------------------------------------------------------------------ build-engines


BUILD_ENGINES = ROOT / "docker" / "engine-builder" / "build-engines.sh"


def _build_engines(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """Run build-engines.sh from the checkout with a stand-in `triton-bundle` that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.jsonl"
    stand_in = bin_dir / "triton-bundle"
    stand_in.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:3] == ['repo', 'generate']:\n"
        "    os.makedirs(sys.argv[sys.argv.index('--out') + 1], exist_ok=True)\n",
        encoding="utf-8",
    )
    stand_in.chmod(0o755)
    # A wrapper, not a symlink: the venv is found from the path the interpreter is started by.
    python3 = bin_dir / "python3"
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    python3.chmod(0o755)
    base = {
        k: v for k, v in os.environ.items() if k not in {"SPEC", "VARIANTS", "MODEL_NAME", "MODEL_REPOSITORY"}
    }
    result = subprocess.run(
        ["bash", str(BUILD_ENGINES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "PATH": f"{bin_dir}:{base.get('PATH', '')}", **env},
        check=False,
    )
    calls = (
        [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    )
    return result, calls


def test_build_engines_builds_each_variant_then_the_nvidia_repository(tmp_path: Path) -> None:
    repository = tmp_path / "repo" / "minilm-intent"
    result, calls = _build_engines(
        tmp_path,
        SPEC="examples/minilm-intent/spec.yaml",
        VARIANTS="fp16 fp32 int8",
        MODEL_NAME="minilm-intent",
        MODEL_REPOSITORY=str(repository),
    )
    assert result.returncode == 0, result.stderr
    spec = "examples/minilm-intent/spec.yaml"
    workdir = ["--workdir", "artifacts/minilm-intent"]
    # The variant the spec serves (repository.precision, fp32 here) first, then the extra ones, once each.
    assert [c[c.index("--variant") + 1] for c in calls[:-1]] == ["fp32", "fp16", "int8"]
    assert calls[0] == ["build", spec, "--variant", "fp32", *workdir, "--force"]
    assert calls[-1][:4] == ["repo", "generate", spec, "--target"] and "nvidia" in calls[-1]
    assert calls[-1][calls[-1].index("--out") + 1] == str(repository)
    assert "no TensorRT engines" in result.stderr  # the preflight ran on what was written


def test_build_engines_refuses_a_model_name_that_is_not_the_specs(tmp_path: Path) -> None:
    result, calls = _build_engines(tmp_path, SPEC="examples/minilm-intent/spec.yaml", MODEL_NAME="other")
    assert result.returncode == 2 and calls == []
    assert "set MODEL_NAME=minilm-intent" in result.stderr


def test_build_engines_stops_on_an_unreadable_spec(tmp_path: Path) -> None:
    result, calls = _build_engines(tmp_path, SPEC="examples/no-such/spec.yaml")
    assert result.returncode == 2 and calls == []
    assert "could not read the spec" in result.stderr


def test_latency_summaries_on_and_verbose_logging_refused(tmp_path: Path) -> None:
    # The alerts and the dashboard read p95 / p99 summaries; verbose logs would carry request contents.
    from triton_bundle.operate.metrics import METRICS_CONFIG_FLAGS

    result, args = _entrypoint(tmp_path, tmp_path, TRITON_ADMIN_KEY="k-1")
    assert result.returncode == 0 and args is not None
    assert set(METRICS_CONFIG_FLAGS) <= set(args) and "--log-verbose=0" in args
    verbose, args = _entrypoint(tmp_path, tmp_path, "--log-verbose=1", TRITON_ADMIN_KEY="k-1")
    assert verbose.returncode == 2 and args is None and "verbose logging" in verbose.stderr
