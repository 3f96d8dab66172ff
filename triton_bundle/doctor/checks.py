"""What this machine can do for the bundle: one check per capability, each with its status and its fix.

Each check takes what it probes as arguments (host and port, the PATH to search), so tests point it at
a busy port or an empty PATH. A check never raises: a probe that errors is a failed check that says so.
Which checks are required depends on the target: `local` needs the wheel's Triton and free ports;
`nvidia` needs a GPU, Docker and the NVIDIA runtime. Everything else is reported as a warning.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from triton_bundle.net import bind_error

Status = Literal["ok", "warn", "fail"]
Target = Literal["local", "nvidia"]
_PROBE_TIMEOUT_S = 20.0
MIN_FREE_DISK_GB = 5.0


@dataclass(frozen=True)
class Probe:
    """What a check found: passed or not, what it saw, and how to fix it."""

    passed: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str
    required: bool


def _run(
    argv: list[str], timeout_s: float = _PROBE_TIMEOUT_S, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False, env=env)


def probe_local_triton(cache_root: Path | None = None) -> Probe:
    """The wheel's tritonserver prepared in the cache, with its Python backend stub, and it loads."""
    from triton_bundle.serving.triton_install import prepare_triton, python_backend_env

    fix = "pip install nvidia-pytriton==0.7.0 (make install does), then re-run doctor"
    try:
        installation = prepare_triton(cache_root)
    except Exception as exc:  # TritonNotInstalledError and any OS error preparing the cache
        return Probe(False, str(exc), fix)
    stub = installation.backend_directory / "python" / "triton_python_backend_stub"
    if not stub.is_file():
        return Probe(False, f"no Python backend stub at {stub}", fix)
    try:
        # Triton has no --version: its usage text proves the binary and its shared libraries load.
        # The environment `serve` starts it with: the wheel's libraries on LD_LIBRARY_PATH.
        result = _run(
            [str(installation.binary), "--help"], timeout_s=60, env=python_backend_env(installation)
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(False, f"{installation.binary} did not run: {exc}", fix)
    output = result.stdout + result.stderr
    if "--model-repository" not in output:
        return Probe(False, f"{installation.binary} exited {result.returncode}: {output.strip()[-300:]}", fix)
    return Probe(True, f"tritonserver from nvidia-pytriton {installation.version} (python backend) runs")


def probe_port(host: str, port: int) -> Probe:
    """Free when a listening socket can bind it (SO_REUSEADDR, as servers do: TIME_WAIT does not count)."""
    exc = bind_error(host, port)
    if exc is not None:
        return Probe(
            False,
            f"{host}:{port} is taken ({exc.strerror or exc})",
            f"stop what listens there (ss -ltnp 'sport = :{port}'), or serve on free ports: "
            "triton-bundle serve SPEC --http-port 0 --grpc-port 0 --metrics-port 0",
        )
    return Probe(True, f"{host}:{port} is free")


def probe_ports(host: str, ports: list[int]) -> Probe:
    """Every port the server needs, in one line: which are taken and how to get free ones."""
    taken = [(port, probe) for port in ports if not (probe := probe_port(host, port)).passed]
    if not taken:
        return Probe(True, f"{host}: {', '.join(map(str, ports))} free")
    detail = "; ".join(probe.detail for _, probe in taken)
    return Probe(False, detail, taken[0][1].fix)


def probe_gpu(which: Callable[[str], str | None] = shutil.which) -> Probe:
    smi = which("nvidia-smi")
    fix = (
        "install the NVIDIA driver (R580+, for the CUDA 13.x images) on a GPU host; without one, use "
        "the local target (CPU) and `triton-bundle build SPEC --aot-check`"
    )
    if smi is None:
        return Probe(False, "nvidia-smi not found: no NVIDIA driver, or no GPU on this machine", fix)
    try:
        result = _run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(False, f"nvidia-smi did not answer: {exc}", fix)
    from triton_bundle.serving.preflight import parse_nvidia_smi

    gpus = parse_nvidia_smi(result.stdout) if result.returncode == 0 else ()
    if not gpus:
        return Probe(False, f"nvidia-smi sees no GPU: {(result.stderr or result.stdout).strip()[:200]}", fix)
    return Probe(True, "; ".join(f"{gpu.name} (compute capability {gpu.compute_capability})" for gpu in gpus))


def probe_tensorrt() -> Probe:
    from triton_bundle.serving.preflight import detect_tensorrt_version

    version, where = detect_tensorrt_version()
    if version is None:
        return Probe(
            False,
            f"TensorRT not on this host ({where})",
            "engines are built in the NVIDIA container: docker compose -f docker/compose.yaml --profile build "
            "run --rm build-engines",
        )
    return Probe(True, f"TensorRT {version} ({where})")


def probe_tensorrt_rtx() -> Probe:
    try:
        module = importlib.import_module("tensorrt_rtx")
    except ImportError as exc:
        from triton_bundle.engine.aot_check import RTX_INSTALL_HINT

        return Probe(False, f"TensorRT for RTX not installed ({exc})", RTX_INSTALL_HINT)
    return Probe(True, f"TensorRT for RTX {getattr(module, '__version__', '?')}: CPU-side engine checks work")


def _docker_info(docker: str) -> tuple[dict | None, str]:
    try:
        result = _run([docker, "info", "--format", "{{json .}}"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return None, lines[-1] if lines else f"exit {result.returncode}"
    try:
        return json.loads(result.stdout), ""
    except json.JSONDecodeError:
        return None, "docker info printed no JSON"


def probe_docker(which: Callable[[str], str | None] = shutil.which) -> tuple[Probe, Probe]:
    """(Docker engine reachable, NVIDIA container runtime registered with it)."""
    docker = which("docker")
    runtime_fix = (
        "install the NVIDIA Container Toolkit and run: sudo nvidia-ctk runtime configure --runtime=docker"
    )
    if docker is None:
        fix = "install Docker Engine and Compose v2 (needed for the NVIDIA host target only)"
        return Probe(False, "docker not found on PATH", fix), Probe(False, "no Docker to check", runtime_fix)
    info, error = _docker_info(docker)
    if info is None:
        fix = "start the Docker daemon, or add your user to the docker group"
        return Probe(False, f"docker daemon not reachable: {error}", fix), Probe(
            False, "no daemon", runtime_fix
        )
    engine = Probe(True, f"Docker {info.get('ServerVersion', '?')}")
    runtimes = sorted(info.get("Runtimes") or {})
    # The runtime entry (`nvidia-ctk runtime configure`), or CDI specs the toolkit generated.
    if "nvidia" in runtimes or (info.get("CDISpecDirs") and which("nvidia-ctk")):
        return engine, Probe(True, f"NVIDIA runtime registered (runtimes: {', '.join(runtimes)})")
    return engine, Probe(False, f"no nvidia runtime (runtimes: {', '.join(runtimes) or 'none'})", runtime_fix)


def probe_disk(path: Path, min_free_gb: float = MIN_FREE_DISK_GB) -> Probe:
    free_gb = shutil.disk_usage(path).free / 1e9
    detail = f"{free_gb:.1f} GB free at {path}"
    if free_gb < min_free_gb:
        return Probe(
            False, detail, f"free space: exports, variants and engines need a few GB ({min_free_gb:g}+)"
        )
    return Probe(True, detail)
