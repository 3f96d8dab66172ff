"""A real Triton Inference Server on any Linux box: the `tritonserver` binary from the nvidia-pytriton wheel.

The wheel ships Triton 2.51 with only the Python backend. To run it outside pytriton we copy its tree to a
writable cache (once per wheel + Python version), drop the Python-version-matching backend stub into
`backends/python/`, and start the binary with an environment under which the stub's embedded Python is
this interpreter's environment (numpy, tokenizers, onnxruntime importable by the python models).

    cfg = ServerConfig(repository=Path("model_repository/minilm-intent"), log_file=Path("triton.log"))
    with LocalTriton(cfg) as server:
        print(server.http_url)      # "127.0.0.1:41234"
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from triton_bundle.errors import BundleError
from triton_bundle.net import client_host, free_port
from triton_bundle.operate.metrics import METRICS_CONFIG_FLAGS
from triton_bundle.processes import last_lines, stop_process_group

PYTRITON_PIN = "nvidia-pytriton==0.7.0"
_LOG_TAIL_LINES = 40
_PORT_RETRIES = 3  # a port picked free can be taken by another process before Triton binds it


class TritonNotInstalledError(BundleError, FileNotFoundError):
    """The tritonserver binary, its libraries or the Python backend stub are missing."""


class TritonStartupError(BundleError, RuntimeError):
    """Triton exited during start-up or did not become ready in time."""


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


@dataclass(frozen=True)
class TritonInstallation:
    """A prepared, runnable copy of the wheel's Triton tree."""

    root: Path
    binary: Path
    backend_directory: Path
    cache_directory: Path
    library_path: list[Path]
    version: str


# ---------------------------------------------------------------------------------------------- install


def _pytriton_dist_dir() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise TritonNotInstalledError(
            f"the nvidia-pytriton package is not installed ({exc}); pip install {PYTRITON_PIN}"
        ) from None
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def _wheel_libs_dir(dist_dir: Path) -> Path:
    # auditwheel puts the wheel's bundled shared libraries beside the package: site-packages/<dist>.libs
    return dist_dir.parent.parent / "nvidia_pytriton.libs"


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _cache_root() -> Path:
    explicit = os.environ.get("TRITON_BUNDLE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base).expanduser() / "triton-bundle"


def _pytriton_version() -> str:
    try:
        return importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def prepare_triton(cache_root: Path | None = None) -> TritonInstallation:
    """A runnable Triton tree in the cache, built once; concurrent callers race safely via rename."""
    dist = _pytriton_dist_dir()
    binary_src = dist / "bin" / "tritonserver"
    stub_src = dist / "python_backend_stubs" / _python_tag() / "triton_python_backend_stub"
    libs = _wheel_libs_dir(dist)
    for what, path in (("tritonserver binary", binary_src), ("Python backend stub", stub_src)):
        if not path.is_file():
            raise TritonNotInstalledError(
                f"{what} not found at {path} (Python {_python_tag()}); pip install {PYTRITON_PIN}"
            )
    if not libs.is_dir():
        raise TritonNotInstalledError(
            f"Triton's bundled libraries not found at {libs}; pip install {PYTRITON_PIN}"
        )

    # The key changes when the wheel is reinstalled, so a stale copy is never reused.
    stat = binary_src.stat()
    key = f"tritonserver-{_pytriton_version()}-py{_python_tag()}-{stat.st_size}-{int(stat.st_mtime)}"
    root = (cache_root or _cache_root()) / key
    if not (root / "bin" / "tritonserver").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root.parent))
        try:
            tree = staging / "tritonserver"
            shutil.copytree(dist, tree, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
            stub_dst = tree / "backends" / "python" / "triton_python_backend_stub"
            shutil.copy2(stub_src, stub_dst)
            for exe in (tree / "bin" / "tritonserver", stub_dst):
                exe.chmod(0o755)
            with contextlib.suppress(FileExistsError, OSError):
                # rename of a directory onto an existing non-empty one fails: another process won.
                tree.rename(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not (root / "bin" / "tritonserver").is_file():
        raise TritonNotInstalledError(
            f"could not prepare the Triton tree at {root}; check the cache is writable"
        )

    libdir = sysconfig.get_config_var("LIBDIR")
    library_path = [libs] + ([Path(libdir)] if libdir else [])
    return TritonInstallation(
        root=root,
        binary=root / "bin" / "tritonserver",
        backend_directory=root / "backends",
        cache_directory=root / "caches",
        library_path=library_path,
        version=_pytriton_version(),
    )


def python_backend_env(
    installation: TritonInstallation, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment under which the Python backend stub embeds THIS interpreter's environment.

    The stub links libpython dynamically (found through LD_LIBRARY_PATH: the interpreter's LIBDIR) and
    computes sys.prefix by looking up `python3` on PATH: with this interpreter's bin/ first that is the
    venv, so its site-packages (and .pth files) load. PYTHONPATH repeats the site-packages explicitly so a
    launch from another cwd or an interpreter without `python3` beside it still imports the same packages.
    """
    env = dict(os.environ if base is None else base)
    ld = [str(p) for p in installation.library_path]
    if env.get("LD_LIBRARY_PATH"):
        ld.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
    bin_dir = str(Path(sys.executable).absolute().parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    site_dirs = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    if env.get("PYTHONPATH"):
        site_dirs.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(site_dirs)
    env.pop("PYTHONHOME", None)
    return env


# ---------------------------------------------------------------------------------------------- server


_FAILED_MODEL = re.compile(r"failed to load '([^']+)' version (\d+): (.*)")
_PORT_IN_USE = re.compile(r"(Address already in use|failed to start (HTTP|GRPC|Metrics) service)", re.I)


def failed_models(log_text: str) -> dict[str, str]:
    """Model name -> first load error, as Triton logs it."""
    failures: dict[str, str] = {}
    for match in _FAILED_MODEL.finditer(log_text):
        # Triton escapes the Python traceback's newlines; the first line names the error.
        failures.setdefault(match.group(1), match.group(3).split("\\n")[0].strip().rstrip('"'))
    return failures


def _configs(repository: Path) -> list:
    """The repository's parsed config.pbtxt files (unparsable ones are Triton's to report)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    configs = []
    for path in sorted(Path(repository).glob("*/config.pbtxt")):
        try:
            configs.append(
                text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
            )
        except (text_format.ParseError, OSError, UnicodeDecodeError):
            continue
    return configs


def repository_uses_response_cache(repository: Path) -> bool:
    """Whether any model's config.pbtxt enables response_cache."""
    return any(config.response_cache.enable for config in _configs(repository))


# The wheel's Triton has the python backend only; ensembles are scheduled by the core.
_LOCAL_BACKENDS = {"python"}
_LOCAL_PLATFORMS = {"ensemble"}


def unsupported_models(repository: Path) -> dict[str, str]:
    """Model name -> backend/platform the local Triton cannot run (tensorrt_plan, onnxruntime_onnx, ...)."""
    found = {}
    for config in _configs(repository):
        kind = config.platform or config.backend
        if config.platform not in _LOCAL_PLATFORMS and config.backend not in _LOCAL_BACKENDS:
            found[config.name] = kind or "(none)"
    return found


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
            raise RuntimeError("the server has not been started; call start() or use `with LocalTriton(...)`")
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
            raise RuntimeError("the server has not been started")
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
        assert self._process is not None
        url = f"http://{self.http_url}/v2/health/ready"
        deadline = time.monotonic() + self.config.ready_timeout_s
        delay = 0.05
        while True:
            code = self._process.poll()
            if code is not None:
                raise self._startup_error(
                    f"tritonserver exited with code {code} during start-up", log_file, offset
                )
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, OSError),
                urllib.request.urlopen(url, timeout=2.0) as response,
            ):
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise self._startup_error(
                    f"tritonserver was not ready after {self.config.ready_timeout_s:.0f} s", log_file, offset
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
