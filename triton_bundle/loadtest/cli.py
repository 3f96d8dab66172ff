"""`triton-bundle loadtest`, `capacity` and `loadtest-compare`.

Exit codes: 0 every SLO met, 1 an SLO failed (the table says which and by how much), 2 usage or bundle
error (raised as BundleError; the top-level CLI prints it as one line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer

from triton_bundle.cli_common import ForceOpt, SpecArg, WorkdirOpt, console, open_spec, option_groups
from triton_bundle.loadtest.render import capacity_table, compare_table, print_result
from triton_bundle.loadtest.settings import Endpoint, Protocol, ShapeKind
from triton_bundle.loadtest.stage import Overrides, local_server, target_model
from triton_bundle.overrides import with_overrides
from triton_bundle.spec import ModelSpec

UrlOpt = Annotated[
    str | None, typer.Option("--url", help="host:port of the endpoint under test [default: spec serving]")
]
MetricsUrlOpt = Annotated[str | None, typer.Option(help="host:port of Triton's metrics (same host as --url)")]
HttpUrlOpt = Annotated[str | None, typer.Option(help="gRPC runs: host:port of the HTTP statistics API")]
ProtocolOpt = Annotated[Protocol | None, typer.Option(help="http or grpc [default: spec]")]
ShapeOpt = Annotated[ShapeKind | None, typer.Option(help="constant, ramp, step, spike, arrival-rate")]
UsersOpt = Annotated[int | None, typer.Option("--users", "-u", min=1, help="users at full load")]
SpawnOpt = Annotated[float | None, typer.Option(min=0.01, help="users started per second")]
DurationOpt = Annotated[float | None, typer.Option("--duration", "-t", min=0.1, max=3600, help="seconds")]
MaxRequestsOpt = Annotated[int | None, typer.Option("--max-requests", "-n", min=1, help="request cap")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", "-b", min=1, help="items per request")]
RpsOpt = Annotated[float | None, typer.Option("--rps", min=0.01, help="arrival-rate: requests per second")]
WorkersOpt = Annotated[
    int | None, typer.Option(min=-1, help="Locust worker processes: 0 one process, -1 one per CPU core")
]
ServeOpt = Annotated[bool, typer.Option("--serve", help="start a local Triton on free ports for this run")]
RepositoryOpt = Annotated[Path | None, typer.Option(help="--serve: the model repository [default: recorded]")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="report directory [default: <workdir>/...]")]
ModelOpt = Annotated[str | None, typer.Option(help="model to call [default: the spec's ensemble]")]


@dataclass(frozen=True)
class RunOptions:
    """Where the run's report goes and which server it calls: every load-test command takes these."""

    workdir: WorkdirOpt = None
    out: OutOpt = None
    force: ForceOpt = False
    url: UrlOpt = None
    metrics_url: MetricsUrlOpt = None
    http_url: HttpUrlOpt = None
    protocol: ProtocolOpt = None


@dataclass(frozen=True)
class RequestOptions:
    """What each request sends and how many are sent, and to which model."""

    batch_size: BatchOpt = None
    max_requests: MaxRequestsOpt = None
    model: ModelOpt = None


@dataclass(frozen=True)
class ServeOptions:
    """--serve: a local Triton on free ports for this run, serving --repository."""

    serve: ServeOpt = False
    repository: RepositoryOpt = None


def _overrides(run: RunOptions, requests: RequestOptions, **more: object) -> Overrides:
    """The run's command-line values (None: the spec's) as the stages take them."""
    return Overrides(
        url=run.url,
        metrics_url=run.metrics_url,
        http_url=run.http_url,
        protocol=run.protocol,
        request_batch_size=requests.batch_size,
        max_requests=requests.max_requests,
        model=requests.model,
        **more,
    )


@contextlib.contextmanager
def _endpoint(
    spec: ModelSpec, workdir: Path, serve: ServeOptions, protocol: Protocol | None
) -> Iterator[Endpoint | None]:
    """None (the test targets --url / the spec's server), or a local Triton started for the run."""
    if not serve.serve:
        yield None
        return
    console.print("starting a local Triton ...")
    with local_server(spec, workdir, serve.repository, protocol) as endpoint:
        console.print(f"local Triton at {endpoint.url} (metrics {endpoint.metrics_url})")
        yield endpoint


# ----------------------------------------------------------------------------------------------- loadtest


@option_groups
def loadtest_command(
    spec_path: SpecArg,
    run: RunOptions = RunOptions(),
    shape: ShapeOpt = None,
    users: UsersOpt = None,
    spawn_rate: SpawnOpt = None,
    duration: DurationOpt = None,
    rps: RpsOpt = None,
    workers: WorkersOpt = None,
    think_time: Annotated[float | None, typer.Option(min=0, help="seconds between a user's requests")] = None,
    requests: RequestOptions = RequestOptions(),
    p50_ms: Annotated[float | None, typer.Option(help="SLO override: p50 latency (ms)")] = None,
    p95_ms: Annotated[float | None, typer.Option(help="SLO override: p95 latency (ms)")] = None,
    p99_ms: Annotated[float | None, typer.Option(help="SLO override: p99 latency (ms)")] = None,
    max_error_rate: Annotated[float | None, typer.Option(min=0, max=1, help="SLO override")] = None,
    min_rps: Annotated[float | None, typer.Option(help="SLO override: minimum requests/s")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="text-generation: tokens per stream [default: spec]")
    ] = None,
    ttft_p95_ms: Annotated[float | None, typer.Option(help="SLO override: p95 time to first token")] = None,
    itl_p95_ms: Annotated[float | None, typer.Option(help="SLO override: p95 inter-token latency")] = None,
    min_tokens_per_s: Annotated[
        float | None, typer.Option(help="SLO override: output tokens/s floor (all streams)")
    ] = None,
    serve: ServeOptions = ServeOptions(),
) -> None:
    """Load-test the served model with Locust and gate the release on the spec's SLOs (exit 1 on a miss).

    text-generation specs run streaming users (HTTP SSE or gRPC streaming) that measure time to first
    token, inter-token latency and output tokens/s."""
    from triton_bundle.loadtest.stage import loadtest_stage

    spec, workdir = open_spec(spec_path, run.workdir)
    overrides = _overrides(
        run,
        requests,
        shape=shape,
        users=users,
        spawn_rate=spawn_rate,
        duration_s=duration,
        target_rps=rps,
        workers=workers,
        think_time_s=think_time,
        max_tokens=max_tokens,
    )
    slo = with_overrides(
        spec.loadtest.slo,
        p50_ms=p50_ms,
        p95_ms=p95_ms,
        p99_ms=p99_ms,
        max_error_rate=max_error_rate,
        min_rps=min_rps,
        ttft_p95_ms=ttft_p95_ms,
        itl_p95_ms=itl_p95_ms,
        min_tokens_per_s=min_tokens_per_s,
    )
    with (
        _endpoint(spec, workdir, serve, run.protocol) as endpoint,
        console.status(f"load-testing {target_model(spec, overrides)} ..."),
    ):
        result = loadtest_stage(
            spec, workdir, overrides, out=run.out, force=run.force, slo=slo, endpoint=endpoint
        )
    print_result(result)
    raise typer.Exit(0 if result.passed else 1)


# ----------------------------------------------------------------------------------------------- capacity


@option_groups
def capacity_command(
    spec_path: SpecArg,
    mode: Annotated[
        Literal["users", "rps"], typer.Option(help="search users (closed loop) or offered req/s")
    ] = "users",
    start: Annotated[float, typer.Option(min=0.01, help="first level")] = 1,
    limit: Annotated[float, typer.Option(min=0.01, help="highest level tried")] = 64,
    max_steps: Annotated[int, typer.Option(min=1, max=30, help="at most this many runs")] = 6,
    step_duration: Annotated[
        float | None, typer.Option(min=0.5, help="seconds per level [default: spec]")
    ] = None,
    run: RunOptions = RunOptions(),
    requests: RequestOptions = RequestOptions(),
    workers: WorkersOpt = None,
    serve: ServeOptions = ServeOptions(),
) -> None:
    """Find the highest user count (or request rate) that meets the SLOs, in at most --max-steps runs."""
    from triton_bundle.loadtest.capacity import capacity_stage

    spec, workdir = open_spec(spec_path, run.workdir)
    with (
        _endpoint(spec, workdir, serve, run.protocol) as endpoint,
        console.status("searching capacity ..."),
    ):
        result = capacity_stage(
            spec,
            workdir,
            mode=mode,
            start=start,
            limit=limit,
            max_steps=max_steps,
            step_duration_s=step_duration,
            overrides=_overrides(run, requests, workers=workers),
            out=run.out,
            force=run.force,
            endpoint=endpoint,
        )
    console.print(capacity_table(result, mode))
    best = "none (even the lowest level misses the SLOs)" if result.best is None else f"{result.best:g}"
    console.print(f"capacity: [bold]{best}[/] {'users' if mode == 'users' else 'req/s'}")
    raise typer.Exit(0 if result.best is not None else 1)


# ----------------------------------------------------------------------------------------------- compare


@option_groups
def compare_command(
    spec_path: SpecArg,
    concurrency: Annotated[int, typer.Option(min=1, help="outstanding requests (Locust users)")] = 4,
    install_perf_analyzer: Annotated[
        bool,
        typer.Option(help="extract perf_analyzer from the tritonclient 2.51.0 wheel first (pip download)"),
    ] = False,
    run: RunOptions = RunOptions(),
    duration: DurationOpt = None,
    requests: RequestOptions = RequestOptions(),
    serve: ServeOptions = ServeOptions(),
) -> None:
    """Run Locust and perf_analyzer at the same concurrency and print both results side by side."""
    from triton_bundle.loadtest.compare import compare_stage
    from triton_bundle.loadtest.perf_analyzer import find_perf_analyzer
    from triton_bundle.loadtest.perf_analyzer import install_perf_analyzer as install

    spec, workdir = open_spec(spec_path, run.workdir)
    if install_perf_analyzer:
        with console.status("downloading tritonclient 2.51.0 for its perf_analyzer ..."):
            binary = install()
        console.print(f"perf_analyzer: {binary.binary}")
    binary = find_perf_analyzer()
    with (
        _endpoint(spec, workdir, serve, run.protocol) as endpoint,
        console.status(f"Locust then perf_analyzer at concurrency {concurrency} ..."),
    ):
        result = compare_stage(
            spec,
            workdir,
            binary,
            concurrency=concurrency,
            overrides=_overrides(run, requests, duration_s=duration),
            out=run.out,
            force=run.force,
            endpoint=endpoint,
        )
    console.print(compare_table(result, concurrency))
    console.print(result.verdict())
    console.print(
        "[dim]Same concurrency and batch size; Locust's clients are Python (gevent), perf_analyzer's C++: "
        "on a CPU-bound client host give Locust more processes (--workers N, Locust's --processes).[/]"
    )


def register(app: typer.Typer) -> None:
    """Mount the load-test commands on the top-level app."""
    app.command("loadtest")(loadtest_command)
    app.command("capacity")(capacity_command)
    app.command("loadtest-compare")(compare_command)
