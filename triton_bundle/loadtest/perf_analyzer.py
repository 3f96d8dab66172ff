"""Cross-check Locust against NVIDIA's perf_analyzer at the same concurrency and batch size.

perf_analyzer ships as a binary in the `tritonclient` wheel. The current `perf-analyzer` wheels need
glibc >= 2.38; the one in `tritonclient==2.51.0` runs on older hosts with libb64 / libcudart taken from
the nvidia-pytriton wheel. Installing that tritonclient would downgrade ours, so `install_perf_analyzer`
downloads the wheel with pip and extracts only the binary into ~/.cache/triton-bundle/.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from triton_bundle.bearer import auth_headers
from triton_bundle.errors import BundleError
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.workload import Workload
from triton_bundle.processes import log_tail

PERF_ANALYZER_WHEEL = "tritonclient==2.51.0"
_BINARY_IN_WHEEL = "tritonclient-2.51.0.data/data/bin/perf_analyzer"
# soname the binary asks for -> the prefix of the file auditwheel put in nvidia_pytriton.libs
_LIBS = {"libb64.so.0d": "libb64-", "libcudart.so.12": "libcudart-"}
_INPUT_SAMPLES = 200
_EXIT_GRACE_S = 30.0
_WINDOWS = 3
_REQUEST_COUNT = re.compile(r"Request count: (\d+)")


class PerfAnalyzerNotFoundError(BundleError, FileNotFoundError):
    """perf_analyzer is not installed; the message says how to get it."""


class PerfAnalyzerError(BundleError, RuntimeError):
    """perf_analyzer ran but did not produce a measurement."""


@dataclass(frozen=True)
class PerfAnalyzerInstall:
    binary: Path
    library_path: list[Path]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(p) for p in self.library_path]
        if env.get("LD_LIBRARY_PATH"):
            paths.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
        return env


class PerfAnalyzerResult(BaseModel):
    """One perf_analyzer measurement; latencies in ms, per request (a request carries batch_size items)."""

    concurrency: int
    batch_size: int
    requests: int
    infer_per_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    server_queue_ms: float
    server_compute_ms: float


def cache_dir() -> Path:
    base = os.environ.get("TRITON_BUNDLE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "triton-bundle"
    )
    return Path(base) / "perf_analyzer-2.51.0"


def _pytriton_libs() -> Path | None:
    with contextlib.suppress(ImportError):
        import pytriton

        libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
        return libs if libs.is_dir() else None
    return None


def find_perf_analyzer() -> PerfAnalyzerInstall:
    """$PERF_ANALYZER, then perf_analyzer on PATH, then the cached copy; else a message saying how to get it."""
    explicit = os.environ.get("PERF_ANALYZER")
    if explicit and Path(explicit).is_file():
        return PerfAnalyzerInstall(Path(explicit), [])
    on_path = shutil.which("perf_analyzer")
    if on_path:
        return PerfAnalyzerInstall(Path(on_path), [])
    cached = cache_dir() / "perf_analyzer"
    if cached.is_file():
        return PerfAnalyzerInstall(cached, [cache_dir() / "lib"])
    raise PerfAnalyzerNotFoundError(
        "perf_analyzer not found ($PERF_ANALYZER, PATH, or "
        f"{cached}); run `triton-bundle loadtest-compare SPEC --install-perf-analyzer` to extract it from "
        f"the {PERF_ANALYZER_WHEEL} wheel (pip download, ~14 MB), or install it from the Triton SDK container"
    )


def install_perf_analyzer() -> PerfAnalyzerInstall:
    """Download the tritonclient 2.51.0 wheel (no install) and extract perf_analyzer into the cache."""
    libs = _pytriton_libs()
    if libs is None:
        raise PerfAnalyzerNotFoundError("nvidia-pytriton (for libb64 / libcudart) is not installed")
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", PERF_ANALYZER_WHEEL, "-d", tmp],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wheels = list(Path(tmp).glob("tritonclient-2.51.0-*.whl"))
        if done.returncode != 0 or not wheels:
            raise PerfAnalyzerError(f"pip download {PERF_ANALYZER_WHEEL} failed:\n{done.stderr[-2000:]}")
        lib_dir = Path(tmp) / "lib"
        lib_dir.mkdir()
        for soname, prefix in _LIBS.items():
            found = sorted(libs.glob(f"{prefix}*"))
            if not found:
                raise PerfAnalyzerNotFoundError(f"{prefix}* not found in {libs}")
            shutil.copy2(found[0], lib_dir / soname)
        binary = Path(tmp) / "perf_analyzer"
        with zipfile.ZipFile(wheels[0]) as wheel:
            binary.write_bytes(wheel.read(_BINARY_IN_WHEEL))
        binary.chmod(0o755)
        shutil.rmtree(target / "lib", ignore_errors=True)
        lib_dir.rename(target / "lib")
        binary.replace(target / "perf_analyzer")
    return PerfAnalyzerInstall(target / "perf_analyzer", [target / "lib"])


def input_data(workload: Workload, path: Path, seed: int = 0) -> list[str]:
    """perf_analyzer's --input-data JSON (texts with the workload's length mix, or the tensor workload's
    .npz rows: the same requests Locust sends) and extra arguments."""
    if workload.kind == "image":
        raise PerfAnalyzerError("loadtest-compare supports text and tensor workloads, not images yet")
    rng = random.Random(seed)
    if workload.kind == "tensor":
        steps = [workload.make_batch(rng, 1) for _ in range(_INPUT_SAMPLES)]
        data = {
            "data": [
                {
                    i.name: {"content": i.array.reshape(-1).tolist(), "shape": list(i.array.shape[1:])}
                    for i in step
                }
                for step in steps
            ]
        }
        path.write_text(json.dumps(data), encoding="utf-8")
        return ["--input-data", str(path)]
    texts = [rng.choice(workload.texts) for _ in range(min(_INPUT_SAMPLES, len(workload.texts)))]
    data = {"data": [{workload.input_name: {"content": [t], "shape": [1]}} for t in texts]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return ["--input-data", str(path)]


def run_perf_analyzer(
    install: PerfAnalyzerInstall,
    endpoint: Endpoint,
    model: str,
    workload: Workload,
    *,
    concurrency: int,
    batch_size: int,
    window_ms: int,
    out_dir: Path,
    timeout_s: float = 300.0,
) -> PerfAnalyzerResult:
    """Three measurement windows of window_ms (no stability retries), killed past timeout_s.

    `--request-count` would bound requests, but perf_analyzer 2.51 then divides by whole seconds and
    under-reports throughput on short runs; time windows measure it correctly.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "perf_analyzer.csv"
    csv_path.unlink(missing_ok=True)
    command = [
        str(install.binary),
        "-m",
        model,
        "-u",
        endpoint.url,
        "-i",
        endpoint.protocol,
        "-b",
        str(batch_size),
        f"--concurrency-range={concurrency}:{concurrency}",
        f"--measurement-interval={window_ms}",
        f"--max-trials={_WINDOWS}",
        "--stability-percentage=999",  # a cross-check: take the windows as they come, never retry
        "-f",
        str(csv_path),
        *input_data(workload, out_dir / "perf_analyzer_input.json"),
        # Through the authenticating proxy: the bearer token (HTTP header / gRPC metadata).
        *[arg for key, value in auth_headers().items() for arg in ("-H", f"{key}:{value}")],
    ]
    log = out_dir / "perf_analyzer.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            command, stdout=fh, stderr=subprocess.STDOUT, env=install.env(), start_new_session=True
        )
        try:
            process.wait(timeout=timeout_s + _EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            # The request texts were perf_analyzer's input only: the report directory keeps no payloads.
            (out_dir / "perf_analyzer_input.json").unlink(missing_ok=True)
    if process.returncode != 0 or not csv_path.is_file():
        tail = log_tail(log, 15, missing="")
        raise PerfAnalyzerError(f"perf_analyzer exited with {process.returncode}:\n{tail}")
    counts = _REQUEST_COUNT.findall(log.read_text(errors="replace"))
    return parse_csv(csv_path, batch_size, int(counts[0]) if counts else 0)


def parse_csv(path: Path, batch_size: int, request_count: int) -> PerfAnalyzerResult:
    """perf_analyzer's -f CSV (microseconds; throughput in inferences/s) -> a result per request."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise PerfAnalyzerError(f"{path} holds no measurement")
    row = rows[-1]

    def us(key: str) -> float:
        return float(row.get(key) or 0) / 1000.0

    infer_per_s = float(row["Inferences/Second"])
    return PerfAnalyzerResult(
        concurrency=int(row["Concurrency"]),
        batch_size=batch_size,
        requests=request_count,
        infer_per_s=infer_per_s,
        rps=infer_per_s / batch_size,
        p50_ms=us("p50 latency"),
        p90_ms=us("p90 latency"),
        p95_ms=us("p95 latency"),
        p99_ms=us("p99 latency"),
        server_queue_ms=us("Server Queue"),
        server_compute_ms=us("Server Compute Input")
        + us("Server Compute Infer")
        + us("Server Compute Output"),
    )
