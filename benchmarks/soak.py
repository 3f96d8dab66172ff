"""Soak run: a long, steady load at a fraction of measured capacity; no failed valid request, flat memory.

    python benchmarks/soak.py --spec examples/minilm-intent/spec.yaml --minutes 10 --load 0.7

1. the spec's model (fine-tuned and exported if the workdir has none) in a fresh local-target repository,
   served by a local Triton on free ports;
2. capacity: short closed-loop Locust runs at rising user counts; the best error-free throughput;
3. the soak: Locust's arrival-rate shape at `load` x capacity for `minutes`, while the resident memory of
   tritonserver and its Python-backend stubs (read from /proc) is sampled every few seconds;
4. a table on stdout and soak.json (plus Locust's own files) under --out. Exit status 1 when a valid
   request failed or memory grew past --max-growth-mb between the first and the last minute.

A benchmark, not a test: the numbers depend on the machine and on what else runs on it (the load
average is recorded at the start and the end).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`python benchmarks/soak.py`): make the checkout importable as in `-m benchmarks.soak`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from triton_bundle.atomic import write_text_atomic
from triton_bundle.entry import run_entry
from triton_bundle.errors import BundleError
from triton_bundle.loadtest.report import write_report
from triton_bundle.loadtest.runner import LoadtestResult, run_loadtest
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, build_settings
from triton_bundle.loadtest.workload import Workload, workload_for
from triton_bundle.serving.local_triton import LocalTriton
from triton_bundle.spec import ModelSpec, load_spec

console = Console(width=None if sys.stdout.isatty() else 160)
app = typer.Typer(add_completion=False, help=__doc__)
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# ----------------------------------------------------------------------------------------------- memory


class MemorySample(BaseModel):
    t_s: float = Field(description="seconds since the soak started")
    rss_mb: float = Field(description="resident memory of tritonserver and its stubs, summed")
    anon_mb: float = Field(description="the anonymous (heap) part of it: where a leak shows")
    processes: dict[str, float] = Field(default_factory=dict, description="process -> RSS MB")


def _status_kb(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            values[key] = int(rest.split()[0])
    return values


def _label(pid: int) -> str:
    """'tritonserver', or the model a Python-backend stub serves (its model.py's directory)."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for arg in args[1:]:
        if arg.endswith(b"/model.py"):
            return f"stub:{Path(arg.decode()).parent.parent.name}"
    return Path(args[0].decode()).name


def group_members(pgid: int) -> list[int]:
    """Processes in the server's process group: tritonserver and the stubs it forked."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command name (which may hold spaces): state ppid pgrp ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def sample_memory(pgid: int, t_s: float) -> MemorySample:
    rss = anon = 0
    processes: dict[str, float] = {}
    for pid in group_members(pgid):
        try:
            status, label = _status_kb(pid), _label(pid)
        except OSError:  # exited between listing and reading
            continue
        rss += status.get("VmRSS", 0)
        anon += status.get("RssAnon", 0)
        processes[label] = round(processes.get(label, 0.0) + status.get("VmRSS", 0) / 1024, 1)
    return MemorySample(
        t_s=round(t_s, 1), rss_mb=round(rss / 1024, 1), anon_mb=round(anon / 1024, 1), processes=processes
    )


class MemorySampler:
    """Samples the server's memory every interval on a background thread."""

    def __init__(self, pgid: int, interval_s: float) -> None:
        self.pgid, self.interval_s = pgid, interval_s
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-memory", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            self.samples.append(sample_memory(self.pgid, time.monotonic() - self._started))
            if self._stop.wait(self.interval_s):
                return


class MemoryGrowth(BaseModel):
    window_s: float
    first_rss_mb: float
    last_rss_mb: float
    first_anon_mb: float
    last_anon_mb: float
    peak_rss_mb: float

    @property
    def growth_mb(self) -> float:
        return round(self.last_rss_mb - self.first_rss_mb, 1)

    @property
    def anon_growth_mb(self) -> float:
        return round(self.last_anon_mb - self.first_anon_mb, 1)


def memory_growth(samples: list[MemorySample], duration_s: float) -> MemoryGrowth:
    """Mean of the first window vs mean of the last (a minute, or a third of a shorter run)."""
    if not samples:
        raise BundleError("no memory samples were taken; was the server running?")
    window = min(60.0, duration_s / 3)
    end = samples[-1].t_s
    first = [s for s in samples if s.t_s <= window] or samples[:1]
    last = [s for s in samples if s.t_s >= end - window] or samples[-1:]

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 1)

    return MemoryGrowth(
        window_s=window,
        first_rss_mb=mean([s.rss_mb for s in first]),
        last_rss_mb=mean([s.rss_mb for s in last]),
        first_anon_mb=mean([s.anon_mb for s in first]),
        last_anon_mb=mean([s.anon_mb for s in last]),
        peak_rss_mb=max(s.rss_mb for s in samples),
    )


# ----------------------------------------------------------------------------------------------- load


class ProbeStep(BaseModel):
    users: int
    rps: float
    failures: int
    p95_ms: float | None


class SoakReport(BaseModel):
    model: str
    cores: int
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float]
    capacity_rps: float
    capacity_probe: list[ProbeStep]
    load_fraction: float
    target_rps: float
    minutes: float
    requests: int
    failed_requests: int
    achieved_rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: list[str]
    memory: MemoryGrowth
    memory_growth_mb: float
    anon_growth_mb: float
    max_growth_mb: float
    passed: bool
    samples: list[MemorySample]
    run_dir: Path


def _run(
    spec: ModelSpec, endpoint: Endpoint, workload: Workload, run_dir: Path, **overrides: object
) -> LoadtestResult:
    settings = build_settings(spec, Overrides(**overrides), run_dir, endpoint)
    result = run_loadtest(settings, workload, spec.loadtest.slo, run_dir)
    write_report(result, run_dir)
    return result


def probe_capacity(
    spec: ModelSpec, endpoint: Endpoint, workload: Workload, out: Path, levels: list[int], seconds: float
) -> tuple[float, list[ProbeStep]]:
    """Closed loop at rising user counts; capacity = the best throughput of an error-free level."""
    steps: list[ProbeStep] = []
    for users in levels:
        result = _run(
            spec,
            endpoint,
            workload,
            out / f"probe-{users}-users",
            users=users,
            spawn_rate=float(users),
            duration_s=seconds,
            max_requests=1_000_000,
        )
        c = result.client
        steps.append(
            ProbeStep(users=users, rps=round(c.rps, 1), failures=c.failures, p95_ms=c.latency.p95_ms)
        )
        console.print(
            f"  probe {users:>3} users: {c.rps:7.1f} req/s, {c.failures} failures, p95 {c.latency.p95_ms} ms"
        )
        clean = [s.rps for s in steps if s.failures == 0]
        # Saturated: one more user level brought less than 5% more throughput.
        if len(clean) >= 2 and clean[-1] < 1.05 * max(clean[:-1]):
            break
    clean = [s.rps for s in steps if s.failures == 0]
    if not clean:
        raise BundleError(f"every capacity probe level failed requests: {steps}")
    return max(clean), steps


def _prepare_repository(spec: ModelSpec, workdir: Path, out: Path) -> Path:
    """A fresh local-target repository from the workdir's export (made first if missing)."""
    from benchmarks.inputs import prepare_inputs
    from triton_bundle.repository.generate import generate_repository

    inputs = prepare_inputs(
        spec, workdir, out / "inputs", ["fp32"], say=lambda m: console.print(f"[dim]{m}[/]")
    )
    return generate_repository(
        spec, inputs.private_workdir, out_dir=out / "repository", target="local", force=True
    )


def print_report(report: SoakReport) -> None:
    table = Table(
        title=f"soak of {report.model}: {'PASSED' if report.passed else 'FAILED'}", show_header=False
    )
    rows = [
        ("capacity (closed loop)", f"{report.capacity_rps:.1f} req/s"),
        ("offered", f"{report.target_rps:.1f} req/s ({report.load_fraction:.0%}) for {report.minutes:g} min"),
        ("achieved", f"{report.achieved_rps:.1f} req/s"),
        ("requests / failed", f"{report.requests} / {report.failed_requests}"),
        (
            "latency p50 / p95 / p99",
            " / ".join(
                "n/a" if v is None else f"{v:.0f} ms" for v in (report.p50_ms, report.p95_ms, report.p99_ms)
            ),
        ),
        (
            f"server RSS first / last {report.memory.window_s:g} s",
            f"{report.memory.first_rss_mb:.0f} / {report.memory.last_rss_mb:.0f} MB ({report.memory_growth_mb:+.1f} MB)",
        ),
        (
            "  of which heap (anon)",
            f"{report.memory.first_anon_mb:.0f} / {report.memory.last_anon_mb:.0f} MB ({report.anon_growth_mb:+.1f} MB)",
        ),
        ("server RSS peak", f"{report.memory.peak_rss_mb:.0f} MB"),
        (
            "load average start / end",
            f"{report.load_average_start[0]:.1f} / {report.load_average_end[0]:.1f} ({report.cores} cores)",
        ),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if report.samples:
        per = Table(title="RSS per process (MB): first and last sample")
        per.add_column("process")
        per.add_column("first", justify="right")
        per.add_column("last", justify="right")
        first, last = report.samples[0].processes, report.samples[-1].processes
        for name in sorted(set(first) | set(last)):
            per.add_row(name, f"{first.get(name, 0):.0f}", f"{last.get(name, 0):.0f}")
        console.print(per)
    for error in report.errors[:5]:
        console.print(f"[red]error:[/] {error}")


@app.command()
def main(
    spec_path: Path = typer.Option(..., "--spec", exists=True, dir_okay=False, help="the model's spec.yaml"),
    minutes: float = typer.Option(10.0, min=0.5, max=60, help="how long the steady load runs"),
    load: float = typer.Option(0.7, min=0.05, max=1.0, help="offered rate as a fraction of capacity"),
    workdir: Path | None = typer.Option(None, help="stage outputs to reuse (default: artifacts/<name>)"),
    out: Path = typer.Option(Path("reports/soak"), help="where soak.json and Locust's files go"),
    capacity_rps: float | None = typer.Option(None, help="skip the probe and use this capacity"),
    probe_levels: str = typer.Option("2,4,8,16", help="user counts the capacity probe tries, in order"),
    probe_seconds: float = typer.Option(20.0, min=5, help="length of each probe level"),
    sample_seconds: float = typer.Option(5.0, min=0.5, help="memory sampling interval"),
    max_growth_mb: float = typer.Option(64.0, min=0, help="memory growth (first vs last minute) that fails"),
) -> None:
    """Measure capacity, hold `load` x capacity for `minutes`, report failures and memory growth."""
    report = soak(
        spec_path,
        minutes,
        load,
        workdir,
        out,
        capacity_rps,
        probe_levels,
        probe_seconds,
        sample_seconds,
        max_growth_mb,
    )
    print_report(report)
    console.print(f"written: {out / 'soak.json'}")
    raise typer.Exit(0 if report.passed else 1)


def soak(
    spec_path: Path,
    minutes: float,
    load: float,
    workdir: Path | None,
    out: Path,
    capacity_rps: float | None,
    probe_levels: str,
    probe_seconds: float,
    sample_seconds: float,
    max_growth_mb: float,
) -> SoakReport:
    from triton_bundle.serving.local_triton import ServerConfig

    spec = load_spec(spec_path)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    repository = _prepare_repository(spec, Path(workdir or spec.default_workdir()), out)
    workload = workload_for(spec)
    with LocalTriton(ServerConfig(repository=repository, log_file=out / "triton.log")) as server:
        endpoint = Endpoint(
            protocol="http", url=server.http_url, metrics_url=server.metrics_url, http_url=server.http_url
        )
        steps: list[ProbeStep] = []
        if capacity_rps is None:
            console.print("measuring capacity (closed loop) ...")
            levels = [int(level) for level in probe_levels.split(",") if level.strip()]
            capacity_rps, steps = probe_capacity(spec, endpoint, workload, out, levels, probe_seconds)
        target = round(load * capacity_rps, 2)
        duration_s = minutes * 60
        console.print(
            f"soaking at {target:.1f} req/s ({load:.0%} of {capacity_rps:.1f}) for {minutes:g} min ..."
        )
        with MemorySampler(server.pid, sample_seconds) as sampler:
            result = _run(
                spec,
                endpoint,
                workload,
                out / "soak",
                shape="arrival-rate",
                target_rps=target,
                duration_s=duration_s,
                max_requests=int(target * duration_s * 1.5) + 100,
            )
    memory = memory_growth(sampler.samples, duration_s)
    c = result.client
    report = SoakReport(
        model=spec.name,
        cores=os.cpu_count() or 1,
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
        capacity_rps=capacity_rps,
        capacity_probe=steps,
        load_fraction=load,
        target_rps=target,
        minutes=minutes,
        requests=c.requests,
        failed_requests=c.failures,
        achieved_rps=round(c.rps, 2),
        p50_ms=c.latency.p50_ms,
        p95_ms=c.latency.p95_ms,
        p99_ms=c.latency.p99_ms,
        errors=[f"{e.occurrences} x {e.error}" for e in c.errors],
        memory=memory,
        memory_growth_mb=memory.growth_mb,
        anon_growth_mb=memory.anon_growth_mb,
        max_growth_mb=max_growth_mb,
        passed=c.failures == 0 and c.requests > 0 and memory.growth_mb <= max_growth_mb,
        samples=sampler.samples,
        run_dir=out / "soak",
    )
    write_text_atomic(out / "soak.json", report.model_dump_json(indent=2))
    return report


if __name__ == "__main__":
    run_entry(app)
