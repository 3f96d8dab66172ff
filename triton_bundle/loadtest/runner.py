"""One bounded load-test run: check the server, start Locust headless in its own process group, sample
the server meanwhile, and judge the result against the SLOs.

Locust runs as a subprocess (`python -m locust`), never imported here: importing it monkey-patches this
process with gevent. Every run is bounded three ways: the shape's duration (and --run-time), the request
cap, and a wall-clock limit after which the runner kills Locust's whole process group.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from triton_bundle.client.errors import ClientError, ServerRejectedError
from triton_bundle.errors import BundleError
from triton_bundle.loadtest.metrics_scraper import ServerScraper, ServerSummary
from triton_bundle.loadtest.results import LocustSummary
from triton_bundle.loadtest.settings import CONFIG_ENV, LoadSettings
from triton_bundle.loadtest.slo import GateResult, evaluate
from triton_bundle.loadtest.workload import LengthProfile, Workload
from triton_bundle.net import free_port
from triton_bundle.processes import log_tail, stop_process_group
from triton_bundle.spec import SLOSpec

if TYPE_CHECKING:
    from triton_bundle.client.metadata import ModelMetadata

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_GRACE_S = 45.0  # importing Locust + tritonclient, forking workers, on a busy 2-core box
# After SIGINT the master waits for every worker's last report before it writes the summary: on a
# busy 2-core box with 2 workers that took over 10 s (a CI run with a training job beside it).
SHUTDOWN_GRACE_S = 20.0
_LOG_TAIL_LINES = 25
_PREFLIGHT_TIMEOUT_S = 5.0


class ServerNotReadyError(BundleError, ConnectionError):
    """No ready Triton, or not the model, at the URL the load test was given."""


class ContractMismatchError(BundleError, ValueError):
    """The model's inputs are not what the workload sends."""


class LocustRunError(BundleError, RuntimeError):
    """Locust did not produce a result; the message carries the end of its log."""


# ----------------------------------------------------------------------------------------------- preflight


def preflight(http_url: str | None, model: str, workload: Workload) -> ModelMetadata | None:
    """The server is ready, serves `model`, takes the workload's inputs; returns the model's metadata.

    Uses the HTTP endpoint (the gRPC endpoint of the same server is checked by the run itself).
    """
    if http_url is None:
        return None
    from triton_bundle.client.client import ClientOptions, TritonClient  # tritonclient: only for a run

    with TritonClient(http_url, "http", options=ClientOptions.probing(_PREFLIGHT_TIMEOUT_S)) as client:
        if not client.is_ready():
            raise ServerNotReadyError(
                f"no ready Triton at {http_url}; start one (triton-bundle serve SPEC) or pass --url "
                "(gRPC runs read readiness, metadata and statistics over HTTP: pass --http-url too)"
            )
        try:
            metadata = client.model_metadata(model)
        except ServerRejectedError as exc:
            raise ServerNotReadyError(
                f"Triton at {http_url} has no ready model '{model}' ({exc}); "
                "check the repository it serves and the spec's name"
            ) from None
        except ClientError as exc:
            raise ServerNotReadyError(f"could not read metadata of '{model}' at {http_url}: {exc}") from None
    have = {i.name: i.datatype for i in metadata.inputs}
    for name, datatype in workload.expected_inputs().items():
        if have.get(name) != datatype:
            raise ContractMismatchError(
                f"model '{model}' takes inputs {have}; the workload sends {name} ({datatype})"
            )
    return metadata


def _with_served_model(settings: LoadSettings, metadata: ModelMetadata | None) -> LoadSettings:
    """The outputs to request (unless set) and, for generation, whether inputs carry a batch dim."""
    if metadata is None:
        return settings
    update: dict[str, object] = {"outputs": settings.outputs or metadata.output_names}
    if settings.generation is not None:
        update["generation"] = settings.generation.model_copy(update={"batched": metadata.batched})
    return settings.model_copy(update=update)


# ----------------------------------------------------------------------------------------------- Locust


@dataclass(frozen=True)
class LocustRun:
    summary: LocustSummary
    pid: int  # also the process group id of Locust and its workers
    exit_code: int
    timed_out: bool
    log: Path
    csv_prefix: Path
    html: Path


def locust_command(settings: LoadSettings, settings_path: Path, run_dir: Path) -> list[str]:
    """The headless Locust command line: bounded by --run-time, with CSV / HTML / log in run_dir."""
    run_time = math.ceil(settings.shape.duration_s) + 2  # the shape ends the run; this is a backstop
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--bundle-config",
        str(settings_path),
        "--run-time",
        f"{run_time}s",
        "--stop-timeout",
        "0",
        "--csv",
        str(run_dir / "locust"),
        "--html",
        str(run_dir / "locust_report.html"),
        "--exit-code-on-error",
        "0",  # failures are judged by the SLO gate, not by Locust's exit code
        "--only-summary",
        "--logfile",
        str(run_dir / "locust.log"),
    ]
    if settings.workers > 0:
        # One command, a master and N forked workers, talking over a free local port (5557 may be taken).
        port = free_port()
        command += [
            "--processes",
            str(settings.workers),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--master-port",
            str(port),
            "--expect-workers-max-wait",
            str(int(STARTUP_GRACE_S)),
        ]
    return command


def _default_sigint() -> None:
    """In the child before exec: SIGINT is how the runner stops Locust, and an ignored or blocked SIGINT
    is inherited across exec (a parent that ignores it would leave Locust deaf to the stop)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _kill_group(process: subprocess.Popen[bytes], grace_s: float = SHUTDOWN_GRACE_S) -> None:
    """SIGINT Locust (it stops its workers and writes its reports), then SIGKILL its whole group."""
    # Only the master is signalled: it must outlive its workers to collect their last reports. SIGINT,
    # not SIGTERM: Locust installs its SIGTERM handler only after a shape run ends.
    stop_process_group(process, first_signal=signal.SIGINT, grace_s=grace_s)


def wall_clock_limit_s(settings: LoadSettings) -> float:
    return settings.shape.duration_s + STARTUP_GRACE_S + SHUTDOWN_GRACE_S + settings.request_timeout_s


def run_locust(settings: LoadSettings, run_dir: Path, limit_s: float | None = None) -> LocustRun:
    """Run Locust once with these settings; kill its process tree if it runs past limit_s."""
    run_dir.mkdir(parents=True, exist_ok=True)
    settings_path = settings.write(run_dir / "locust_settings.json")
    settings.summary_path.unlink(missing_ok=True)
    output = run_dir / "locust_output.txt"
    limit_s = limit_s or wall_clock_limit_s(settings)
    env = {**os.environ, CONFIG_ENV: str(settings_path), "PYTHONUNBUFFERED": "1"}
    timed_out = False
    with open(output, "wb") as out:
        process = subprocess.Popen(
            locust_command(settings, settings_path, run_dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(run_dir),
            start_new_session=True,  # its own process group: workers die with it
            preexec_fn=_default_sigint,
        )
        try:
            process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Also on KeyboardInterrupt: never leave Locust (or its workers) sending traffic.
            _kill_group(process)
    if not settings.summary_path.is_file():
        why = (
            f"did not finish within {limit_s:.0f} s"
            if timed_out
            else f"exited with code {process.returncode}"
        )
        raise LocustRunError(
            f"Locust {why} without writing its summary ({settings.summary_path}).\n"
            f"Output:\n{log_tail(output, _LOG_TAIL_LINES)}\n"
            f"Log ({run_dir / 'locust.log'}):\n{log_tail(run_dir / 'locust.log', _LOG_TAIL_LINES)}"
        )
    summary = LocustSummary.model_validate_json(settings.summary_path.read_text(encoding="utf-8"))
    if timed_out:
        summary.stop_reason = f"killed after the {limit_s:.0f} s wall-clock limit"
    return LocustRun(
        summary=summary,
        pid=process.pid,
        exit_code=process.returncode if process.returncode is not None else -1,
        timed_out=timed_out,
        log=run_dir / "locust.log",
        csv_prefix=run_dir / "locust",
        html=run_dir / "locust_report.html",
    )


# ----------------------------------------------------------------------------------------------- run


class LoadtestResult(BaseModel):
    """Everything one run measured and decided."""

    settings: LoadSettings
    workload_source: str
    length_profile: LengthProfile | None = None
    client: LocustSummary
    server: ServerSummary
    gate: GateResult
    timed_out: bool = False
    run_dir: Path
    artifacts: dict[str, Path] = Field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def target_rps(self) -> float | None:
        return self.settings.shape.target_rps


def run_loadtest(
    settings: LoadSettings, workload: Workload, slo: SLOSpec, run_dir: Path, scrape_interval_s: float = 1.0
) -> LoadtestResult:
    """Preflight, Locust with server sampling, SLO gate. Writes Locust's files into run_dir."""
    metadata = preflight(settings.endpoint.stats_url(), settings.model, workload)
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = _with_served_model(settings, metadata)
    workload.save(settings.workload_path)
    scraper = ServerScraper(settings.endpoint, settings.model, scrape_interval_s).start()
    try:
        locust = run_locust(settings, run_dir)
    finally:
        server = scraper.stop()
        # The request texts were only for Locust: the report directory keeps no payloads (the spec's
        # data and the seed reproduce them).
        settings.workload_path.unlink(missing_ok=True)
    return LoadtestResult(
        settings=settings,
        workload_source=workload.source,
        length_profile=workload.length_profile(),
        client=locust.summary,
        server=server,
        gate=evaluate(slo, locust.summary),
        timed_out=locust.timed_out,
        run_dir=run_dir,
        artifacts={
            "locust_html": locust.html,
            "locust_stats_csv": Path(f"{locust.csv_prefix}_stats.csv"),
            "locust_history_csv": Path(f"{locust.csv_prefix}_stats_history.csv"),
            "locust_failures_csv": Path(f"{locust.csv_prefix}_failures.csv"),
            "locust_log": locust.log,
        },
    )
