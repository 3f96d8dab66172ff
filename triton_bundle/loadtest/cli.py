"""`triton-bundle loadtest`, `capacity` and `loadtest-compare`.

Exit codes: 0 every SLO met, 1 an SLO failed (the table says which and by how much), 2 usage or bundle
error (raised as BundleError; the top-level CLI prints it as one line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from triton_bundle.cli_common import ForceOpt, SpecArg, WorkdirOpt, open_spec, print_path
from triton_bundle.loadtest.settings import Endpoint, Protocol, ShapeKind
from triton_bundle.loadtest.stage import Overrides, local_server, target_model
from triton_bundle.spec import ModelSpec, SLOSpec

console = Console()

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


def _slo(
    spec: ModelSpec,
    p50: float | None,
    p95: float | None,
    p99: float | None,
    err: float | None,
    rps: float | None,
    **generation: float | None,
) -> SLOSpec:
    slo = spec.loadtest.slo.model_copy()
    for field, value in (
        ("p50_ms", p50),
        ("p95_ms", p95),
        ("p99_ms", p99),
        ("max_error_rate", err),
        ("min_rps", rps),
        *generation.items(),
    ):
        if value is not None:
            setattr(slo, field, value)
    return SLOSpec.model_validate(slo.model_dump())


@contextlib.contextmanager
def _endpoint(
    spec: ModelSpec, workdir: Path, serve: bool, repository: Path | None, protocol: Protocol | None
) -> Iterator[Endpoint | None]:
    """None (the test targets --url / the spec's server), or a local Triton started for the run."""
    if not serve:
        yield None
        return
    console.print("starting a local Triton ...")
    with local_server(spec, workdir, repository, protocol) as endpoint:
        console.print(f"local Triton at {endpoint.url} (metrics {endpoint.metrics_url})")
        yield endpoint


# ----------------------------------------------------------------------------------------------- loadtest


def loadtest_command(
    spec_path: SpecArg,
    workdir: WorkdirOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    url: UrlOpt = None,
    metrics_url: MetricsUrlOpt = None,
    http_url: HttpUrlOpt = None,
    protocol: ProtocolOpt = None,
    shape: ShapeOpt = None,
    users: UsersOpt = None,
    spawn_rate: SpawnOpt = None,
    duration: DurationOpt = None,
    max_requests: MaxRequestsOpt = None,
    batch_size: BatchOpt = None,
    rps: RpsOpt = None,
    workers: WorkersOpt = None,
    think_time: Annotated[float | None, typer.Option(min=0, help="seconds between a user's requests")] = None,
    model: ModelOpt = None,
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
    serve: ServeOpt = False,
    repository: RepositoryOpt = None,
) -> None:
    """Load-test the served model with Locust and gate the release on the spec's SLOs (exit 1 on a miss).

    text-generation specs run streaming users (HTTP SSE or gRPC streaming) that measure time to first
    token, inter-token latency and output tokens/s."""
    from triton_bundle.loadtest.stage import loadtest_stage

    spec, workdir = open_spec(spec_path, workdir)
    overrides = Overrides(
        url=url,
        metrics_url=metrics_url,
        http_url=http_url,
        protocol=protocol,
        shape=shape,
        users=users,
        spawn_rate=spawn_rate,
        duration_s=duration,
        max_requests=max_requests,
        request_batch_size=batch_size,
        target_rps=rps,
        workers=workers,
        think_time_s=think_time,
        model=model,
        max_tokens=max_tokens,
    )
    slo = _slo(
        spec,
        p50_ms,
        p95_ms,
        p99_ms,
        max_error_rate,
        min_rps,
        ttft_p95_ms=ttft_p95_ms,
        itl_p95_ms=itl_p95_ms,
        min_tokens_per_s=min_tokens_per_s,
    )
    with (
        _endpoint(spec, workdir, serve, repository, protocol) as endpoint,
        console.status(f"load-testing {target_model(spec, overrides)} ..."),
    ):
        result = loadtest_stage(spec, workdir, overrides, out=out, force=force, slo=slo, endpoint=endpoint)
    print_result(result)
    raise typer.Exit(0 if result.passed else 1)


def print_result(result, out: Console | None = None) -> None:
    """Client numbers, the SLO gate, Triton's own statistics (key / value, so they fit 80 columns)."""
    out = out or console
    c, s, settings = result.client, result.server, result.settings
    table = Table(title=f"{settings.model} over {settings.endpoint.protocol} ({c.stop_reason})")
    for column in ("requests", "failures", "req/s", "items/s", "p50", "p95", "p99"):
        table.add_column(column, justify="right")
    ms = lambda v: "n/a" if v is None else f"{v:.1f} ms"  # noqa: E731
    table.add_row(
        str(c.requests),
        str(c.failures),
        f"{c.rps:.1f}",
        f"{c.items_per_s:.1f}",
        ms(c.latency.p50_ms),
        ms(c.latency.p95_ms),
        ms(c.latency.p99_ms),
    )
    out.print(table)
    if c.generation is not None:
        _print_generation(c.generation, out)

    gate = Table(title="SLO gate")
    for column in ("SLO", "threshold", "measured", "margin", "result"):
        gate.add_column(column, justify="left" if column == "SLO" else "right")
    for check in result.gate.checks:
        gate.add_row(
            check.description,
            f"{'<=' if check.bound == 'max' else '>='} {check.threshold:g} {check.unit}",
            "n/a" if check.measured is None else f"{check.measured:.4g} {check.unit}",
            "n/a" if check.margin is None else f"{check.margin:+.4g} {check.unit}",
            "[green]pass[/]" if check.passed else "[bold red]FAIL[/]",
        )
    out.print(gate)

    server = Table(title="server (Triton statistics)", show_header=False)
    server.add_column("statistic", no_wrap=True)
    server.add_column("value", overflow="fold")
    share = "n/a" if s.queue_share is None else f"{100 * s.queue_share:.0f}%"
    batch = "n/a" if s.avg_batch_size is None else f"{s.avg_batch_size:.1f}"
    cpu = "n/a" if s.cpu_utilization_avg is None else f"{100 * s.cpu_utilization_avg:.0f}%"
    for name, value in (
        ("queue / request", ms(s.queue_ms)),
        ("compute / request", ms(s.compute_ms)),
        ("queue share", share),
        ("avg batch", batch),
        ("busiest model", s.bottleneck_model or "n/a"),
        ("CPU utilisation", cpu),
    ):
        server.add_row(name, value)
    out.print(server)
    for line in s.scrape_errors[:3]:
        out.print(f"[yellow]server sampling: {line}[/]")
    for e in c.errors[:3]:
        out.print(f"[red]{e.occurrences} x {e.error[:200]}[/]")
    for key in ("summary_md", "report_json", "locust_html", "timeline_png", "generation_png"):
        if key in result.artifacts:
            print_path(f"{key}:", result.artifacts[key], out)
    if result.passed:
        out.print("[bold green]all SLOs met[/]")
    else:
        for check in result.gate.failed:
            out.print(f"[bold red]{check.explain()}[/]")


def _print_generation(gen, out: Console) -> None:
    table = Table(title="streamed generation")
    for column in ("streams", "tokens", "tokens/s", "per stream", "TTFT p50/95/99", "ITL p50/95/99"):
        table.add_column(column, justify="right")
    rate = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    trio = lambda p: " / ".join("-" if v is None else f"{v:g}" for v in (p.p50_ms, p.p95_ms, p.p99_ms))  # noqa: E731
    table.add_row(
        str(gen.streams),
        str(gen.tokens),
        rate(gen.tokens_per_s),
        rate(gen.stream_tokens_per_s_p50),
        f"{trio(gen.ttft)} ms",
        f"{trio(gen.itl)} ms",
    )
    out.print(table)


# ----------------------------------------------------------------------------------------------- capacity


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
    workdir: WorkdirOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    url: UrlOpt = None,
    metrics_url: MetricsUrlOpt = None,
    http_url: HttpUrlOpt = None,
    protocol: ProtocolOpt = None,
    batch_size: BatchOpt = None,
    max_requests: MaxRequestsOpt = None,
    workers: WorkersOpt = None,
    model: ModelOpt = None,
    serve: ServeOpt = False,
    repository: RepositoryOpt = None,
) -> None:
    """Find the highest user count (or request rate) that meets the SLOs, in at most --max-steps runs."""
    from triton_bundle.loadtest.capacity import capacity_stage

    spec, workdir = open_spec(spec_path, workdir)
    overrides = Overrides(
        url=url,
        metrics_url=metrics_url,
        http_url=http_url,
        protocol=protocol,
        request_batch_size=batch_size,
        max_requests=max_requests,
        workers=workers,
        model=model,
    )
    with (
        _endpoint(spec, workdir, serve, repository, protocol) as endpoint,
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
            overrides=overrides,
            out=out,
            force=force,
            endpoint=endpoint,
        )
    table = Table(title=f"capacity search ({mode}): {result.note}")
    for column in ("level", "result", "req/s", "p50", "p95", "p99", "why"):
        table.add_column(column, justify="left" if column == "why" else "right")
    ms = lambda v: "n/a" if v is None else f"{v:.0f} ms"  # noqa: E731
    for step in result.steps:
        table.add_row(
            f"{step.level:g}",
            "[green]pass[/]" if step.passed else "[red]FAIL[/]",
            f"{step.rps:.1f}",
            ms(step.p50_ms),
            ms(step.p95_ms),
            ms(step.p99_ms),
            "; ".join(step.reasons)[:120],
        )
    console.print(table)
    best = "none (even the lowest level misses the SLOs)" if result.best is None else f"{result.best:g}"
    console.print(f"capacity: [bold]{best}[/] {'users' if mode == 'users' else 'req/s'}")
    raise typer.Exit(0 if result.best is not None else 1)


# ----------------------------------------------------------------------------------------------- compare


def compare_command(
    spec_path: SpecArg,
    concurrency: Annotated[int, typer.Option(min=1, help="outstanding requests (Locust users)")] = 4,
    install_perf_analyzer: Annotated[
        bool,
        typer.Option(help="extract perf_analyzer from the tritonclient 2.51.0 wheel first (pip download)"),
    ] = False,
    workdir: WorkdirOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    url: UrlOpt = None,
    metrics_url: MetricsUrlOpt = None,
    http_url: HttpUrlOpt = None,
    protocol: ProtocolOpt = None,
    duration: DurationOpt = None,
    max_requests: MaxRequestsOpt = None,
    batch_size: BatchOpt = None,
    model: ModelOpt = None,
    serve: ServeOpt = False,
    repository: RepositoryOpt = None,
) -> None:
    """Run Locust and perf_analyzer at the same concurrency and print both results side by side."""
    from triton_bundle.loadtest.compare import compare_stage
    from triton_bundle.loadtest.perf_analyzer import find_perf_analyzer
    from triton_bundle.loadtest.perf_analyzer import install_perf_analyzer as install

    spec, workdir = open_spec(spec_path, workdir)
    if install_perf_analyzer:
        with console.status("downloading tritonclient 2.51.0 for its perf_analyzer ..."):
            binary = install()
        console.print(f"perf_analyzer: {binary.binary}")
    binary = find_perf_analyzer()
    overrides = Overrides(
        url=url,
        metrics_url=metrics_url,
        http_url=http_url,
        protocol=protocol,
        duration_s=duration,
        max_requests=max_requests,
        request_batch_size=batch_size,
        model=model,
    )
    with (
        _endpoint(spec, workdir, serve, repository, protocol) as endpoint,
        console.status(f"Locust then perf_analyzer at concurrency {concurrency} ..."),
    ):
        result = compare_stage(
            spec,
            workdir,
            binary,
            concurrency=concurrency,
            overrides=overrides,
            out=out,
            force=force,
            endpoint=endpoint,
        )
    table = Table(
        title=f"{result.model} over {result.protocol}: concurrency {concurrency}, batch {result.batch_size}"
    )
    for column in ("tool", "requests", "req/s", "infer/s", "p50", "p95", "p99"):
        table.add_column(column, justify="left" if column == "tool" else "right")
    ms = lambda v: "n/a" if v is None else f"{v:.2f} ms"  # noqa: E731
    for row in result.rows:
        table.add_row(
            row.tool,
            str(row.requests),
            f"{row.rps:.1f}",
            f"{row.infer_per_s:.1f}",
            ms(row.p50_ms),
            ms(row.p95_ms),
            ms(row.p99_ms),
        )
    console.print(table)
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
