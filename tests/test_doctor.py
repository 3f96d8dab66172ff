"""`triton-bundle doctor`: each check on inputs the test controls (a busy port, an empty PATH)."""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from triton_bundle.cli import app
from triton_bundle.doctor.checks import probe_docker, probe_gpu, probe_local_triton, probe_port, probe_ports
from triton_bundle.doctor.run import exit_code, next_steps, run_checks
from triton_bundle.net import free_port


@pytest.fixture
def busy_port():
    """A port something really listens on for the length of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _nothing_on_path(name: str) -> None:
    return None


def test_a_busy_port_fails_with_how_to_get_free_ones(busy_port):
    probe = probe_port("127.0.0.1", busy_port)
    assert not probe.passed
    assert f"127.0.0.1:{busy_port} is taken" in probe.detail
    assert f"sport = :{busy_port}" in probe.fix and "--http-port 0" in probe.fix
    free = free_port()
    both = probe_ports("127.0.0.1", [free, busy_port])
    assert not both.passed and str(busy_port) in both.detail and str(free) not in both.detail
    assert probe_ports("127.0.0.1", [free]).passed


def test_no_docker_and_no_gpu_on_path_name_their_fixes():
    engine, runtime = probe_docker(which=_nothing_on_path)
    assert not engine.passed and "docker not found" in engine.detail and "Docker Engine" in engine.fix
    assert not runtime.passed and "nvidia-ctk runtime configure" in runtime.fix
    gpu = probe_gpu(which=_nothing_on_path)
    assert not gpu.passed and "nvidia-smi not found" in gpu.detail and "--aot-check" in gpu.fix


def test_a_broken_triton_install_is_a_failed_check_not_a_crash(tmp_path, monkeypatch):
    import triton_bundle.serving.triton_install as triton_install

    monkeypatch.setattr(triton_install, "_pytriton_dist_dir", lambda: tmp_path / "no-such-wheel")
    probe = probe_local_triton(tmp_path / "cache")
    assert not probe.passed and "tritonserver binary not found" in probe.detail
    assert "pip install nvidia-pytriton" in probe.fix


def test_the_target_decides_what_fails(busy_port, tmp_path):
    local = {
        r.name: r for r in run_checks("local", "127.0.0.1", [busy_port], tmp_path, which=_nothing_on_path)
    }
    assert local["ports"].status == "fail" and local["ports"].required
    assert local["NVIDIA GPU"].status == "warn" and local["Docker"].status == "warn"
    nvidia = run_checks("nvidia", "127.0.0.1", [free_port()], tmp_path, which=_nothing_on_path)
    by_name = {r.name: r for r in nvidia}
    assert by_name["NVIDIA GPU"].status == "fail" and by_name["ports"].status == "ok"
    assert exit_code(nvidia) == 1
    assert not any("build-engines" in step for step in next_steps(nvidia))


@pytest.mark.slow  # runs the wheel's tritonserver binary
def test_doctor_cli_on_this_machine(busy_port):
    runner = CliRunner()
    ok = runner.invoke(app, ["doctor", "--port", str(free_port()), "--json"])
    checks = {c["name"]: c for c in json.loads(ok.stdout)["checks"]}
    assert checks["local Triton"]["status"] == "ok", checks["local Triton"]
    assert ok.exit_code == 0
    busy = runner.invoke(app, ["doctor", "--port", str(busy_port)], env={"COLUMNS": "120"})
    assert busy.exit_code == 1
    assert "FAIL" in busy.stdout and "--http-port 0" in busy.stdout
    assert "triton-bundle init CHECKPOINT" in busy.stdout  # Triton itself is fine: what to run next


def _tool(directory, name: str, stdout: str) -> None:
    script = directory / name
    script.write_text(f"#!/bin/sh\ncat <<'OUT'\n{stdout}\nOUT\n", encoding="utf-8")
    script.chmod(0o755)


def test_a_gpu_host_reads_as_ready_for_the_nvidia_target(tmp_path):
    """This box has no GPU or Docker daemon: the two tools a GPU host has are stood in by scripts that
    print what the real ones print, so the branch that host takes is exercised (parsing, status, next)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "nvidia-smi", "NVIDIA H100 80GB HBM3, 9.0\nNVIDIA H100 80GB HBM3, 9.0")
    _tool(bin_dir, "docker", json.dumps({"ServerVersion": "27.3.1", "Runtimes": {"nvidia": {}, "runc": {}}}))

    def which(name: str) -> str | None:
        path = bin_dir / name
        return str(path) if path.exists() else None

    gpu = probe_gpu(which)
    assert gpu.passed and gpu.detail.count("NVIDIA H100 80GB HBM3 (compute capability 9.0)") == 2
    engine, runtime = probe_docker(which)
    assert engine.passed and "27.3.1" in engine.detail
    assert runtime.passed and "nvidia, runc" in runtime.detail
    results = run_checks("nvidia", "127.0.0.1", [free_port()], tmp_path, which=which)
    assert exit_code(results) == 0
    assert any("build-engines" in step for step in next_steps(results))
