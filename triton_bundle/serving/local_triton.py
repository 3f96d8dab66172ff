"""A real Triton Inference Server on any Linux box: start, health-check and stop the `tritonserver`
process of the nvidia-pytriton wheel (the tree is prepared by `triton_install`, the repository is
checked by `repository_configs` first).

    cfg = ServerConfig(repository=Path("model_repository/minilm-intent"), log_file=Path("triton.log"))
    with LocalTriton(cfg) as server:
        print(server.http_url)      # "127.0.0.1:41234"
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import subprocess
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from triton_bundle.errors import BundleError
from triton_bundle.net import client_host, free_port
from triton_bundle.operate.metrics import METRICS_CONFIG_FLAGS
from triton_bundle.processes import last_lines, stop_process_group
from triton_bundle.serving.repository_configs import repository_uses_response_cache, unsupported_models
from triton_bundle.serving.triton_install import TritonInstallation, prepare_triton, python_backend_env

_LOG_TAIL_LINES = 40
_PORT_RETRIES = 3  # a port picked free can be taken by another process before Triton binds it


class TritonStartupError(BundleError, RuntimeError):
    """Triton exited during start-up or did not become ready in time."""


class ServerNotStartedError(BundleError, RuntimeError):
    """An address or PID was asked of a LocalTriton before start()."""


@dataclass
class ServerConfig:
    """How to start one local Triton. Ports set to 0 are picked free at start()."""

    repository: Path
    log_file: Path
    host: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    model_control_mode: Literal["none", "poll", "explicit"] = "none"
    ready_timeout_s: float = 120.0
    extra_args: list[str] = field(default_factory=list)
    stop_timeout_s: float = 30.0
    # Used only when a model enables response_cache and extra_args has no --cache-config: Triton
    # otherwise starts with the cache silently disabled.
    response_cache_bytes: int = 64 << 20


_FAILED_MODEL = re.compile(r"failed to load '([^']+)' version (\d+): (.*)")
_PORT_IN_USE = re.compile(r"(Address already in use|failed to start (HTTP|GRPC|Metrics) service)", re.I)


def failed_models(log_text: str) -> dict[str, str]:
    """Model name -> first load error, as Triton logs it."""
    failures: dict[str, str] = {}
    for match in _FAILED_MODEL.finditer(log_text):
        # Triton escapes the Python traceback's newlines; the first line names the error.
        failures.setdefault(match.group(1), match.group(3).split("\\n")[0].strip().rstrip('"'))
    return failures


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    # Triton's start-up tables (options, backends, models) crowd out the lines that explain a failure;
    # model failures are reported separately, so the tail keeps only the log lines proper.
    kept = [
        line for line in text.rstrip().splitlines() if line.strip() and line.lstrip()[:1] not in ("|", "+")
    ]
    return last_lines("\n".join(kept), lines)


_RUNNING: weakref.WeakSet[LocalTriton] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    # A server whose owner forgot stop() must not outlive the interpreter.
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


class LocalTriton:
    """Start, health-check and stop one tritonserver process. Use as a context manager."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._log_handle = None
        self._ports: dict[str, int] = {}
        self._shm_prefix = ""
        self.installation: TritonInstallation | None = None

    # -- addresses ---------------------------------------------------------------------------------
    def _url(self, kind: str) -> str:
        if kind not in self._ports:
            raise ServerNotStartedError(
                "the server has not been started; call start() or use `with LocalTriton(...)`"
            )
        return f"{client_host(self.config.host)}:{self._ports[kind]}"

    @property
    def http_url(self) -> str:
        return self._url("http")

    @property
    def grpc_url(self) -> str:
        return self._url("grpc")

    @property
    def metrics_url(self) -> str:
        return self._url("metrics")

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise ServerNotStartedError("the server has not been started")
        return self._pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> LocalTriton:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalTriton:
        if self.is_running():
            return self
        repository = Path(self.config.repository).expanduser().resolve()
        if not repository.is_dir():
            raise TritonStartupError(
                f"model repository {repository} does not exist; generate it first "
                "(triton-bundle repo generate SPEC)"
            )
        unsupported = unsupported_models(repository)
        if unsupported:
            listing = ", ".join(f"{name} ({kind})" for name, kind in unsupported.items())
            raise TritonStartupError(
                f"the local Triton has only the python backend and cannot load: {listing}. Generate the "
                "repository with --target local, or serve this one with the NVIDIA Triton image"
            )
        self.installation = prepare_triton()
        log_file = Path(self.config.log_file).expanduser().resolve()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_bytes(b"")
        auto_ports = 0 in (self.config.http_port, self.config.grpc_port, self.config.metrics_port)
        attempts = _PORT_RETRIES if auto_ports else 1
        for attempt in range(1, attempts + 1):
            offset = log_file.stat().st_size
            try:
                self._launch(repository, log_file)
                self._wait_ready(log_file, offset)
                return self
            except TritonStartupError as exc:
                self.stop()
                log_text = log_file.read_text(encoding="utf-8", errors="replace")[offset:]
                if attempt < attempts and _PORT_IN_USE.search(log_text) and not failed_models(log_text):
                    continue
                raise exc from None
            except BaseException:
                # Ctrl-C or any other failure while waiting must not leave the server running.
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _pick_ports(self) -> dict[str, int]:
        chosen: dict[str, int] = {}
        for kind, port in (
            ("http", self.config.http_port),
            ("grpc", self.config.grpc_port),
            ("metrics", self.config.metrics_port),
        ):
            while port == 0 or port in chosen.values():
                port = free_port(client_host(self.config.host))
            chosen[kind] = port
        return chosen

    def command(self, repository: Path) -> list[str]:
        """The tritonserver command line for the current ports (prepared installation required)."""
        assert self.installation is not None
        host = self.config.host
        return [
            str(self.installation.binary),
            f"--model-repository={repository}",
            f"--backend-directory={self.installation.backend_directory}",
            f"--cache-directory={self.installation.cache_directory}",
            f"--http-address={host}",
            f"--http-port={self._ports['http']}",
            f"--grpc-address={host}",
            f"--grpc-port={self._ports['grpc']}",
            f"--metrics-address={host}",
            f"--metrics-port={self._ports['metrics']}",
            "--allow-gpu-metrics=false",
            f"--model-control-mode={self.config.model_control_mode}",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=10",
            # Latency summaries (p50 / p95 / p99) for the alerts and the dashboard, as in the containers.
            *METRICS_CONFIG_FLAGS,
            # No request contents in the log: verbose logging off, whatever the binary's default.
            "--log-verbose=0",
            # Our own shared-memory prefix: regions a killed server leaves in /dev/shm are then known to
            # be ours and removed in stop().
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            *self._cache_args(repository),
            *self.config.extra_args,
        ]

    def _cache_args(self, repository: Path) -> list[str]:
        if any(arg.startswith("--cache-config") for arg in self.config.extra_args):
            return []
        if not repository_uses_response_cache(repository):
            return []
        return [f"--cache-config=local,size={self.config.response_cache_bytes}"]

    def _launch(self, repository: Path, log_file: Path) -> None:
        assert self.installation is not None
        self._ports = self._pick_ports()
        self._shm_prefix = f"tb{os.getpid()}_{secrets.token_hex(4)}_"
        self._log_handle = open(log_file, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self.command(repository),
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=python_backend_env(self.installation),
            cwd=str(repository),
            # Own process group: stop() can reach the Python stubs Triton forks, by this PID.
            start_new_session=True,
        )
        self._pid = self._process.pid
        _RUNNING.add(self)

    def _wait_ready(self, log_file: Path, offset: int) -> None:
        from triton_bundle.client.client import ClientOptions, TritonClient

        assert self._process is not None
        deadline = time.monotonic() + self.config.ready_timeout_s
        delay = 0.05
        with TritonClient(self.http_url, "http", options=ClientOptions(timeout_s=2.0)) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise self._startup_error(
                        f"tritonserver exited with code {code} during start-up", log_file, offset
                    )
                if client.is_ready():
                    return
                if time.monotonic() > deadline:
                    raise self._startup_error(
                        f"tritonserver was not ready after {self.config.ready_timeout_s:.0f} s",
                        log_file,
                        offset,
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)

    def _startup_error(self, headline: str, log_file: Path, offset: int) -> TritonStartupError:
        log_text = log_file.read_text(encoding="utf-8", errors="replace")[offset:]
        lines = [f"{headline} (repository {Path(self.config.repository).resolve()}, log {log_file})"]
        failures = failed_models(log_text)
        if failures:
            lines.append("models that failed to load:")
            lines += [f"  - {name}: {reason}" for name, reason in failures.items()]
        lines.append(f"last lines of the log:\n{_tail(log_text)}")
        return TritonStartupError("\n".join(lines))

    def stop(self) -> None:
        """SIGTERM, wait up to stop_timeout_s, then SIGKILL the process group; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            # Python-backend stubs left behind by a crash or a hung exit die with the group.
            stop_process_group(process, grace_s=self.config.stop_timeout_s, kill_wait_s=10)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        self._remove_shared_memory()
        _RUNNING.discard(self)

    def _remove_shared_memory(self) -> None:
        # A killed server leaves its Python-backend regions in /dev/shm; the prefix is ours alone.
        if not self._shm_prefix:
            return
        for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            with contextlib.suppress(OSError):
                region.unlink()
