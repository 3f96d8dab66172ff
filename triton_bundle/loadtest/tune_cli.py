"""`triton-bundle tune`: the repository options that serve the spec's load best under its SLOs.

Exit codes: 0 a trial met every SLO (its options are printed as a spec snippet), 1 none did, 2 usage or
bundle error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from triton_bundle.cli_common import ForceOpt, SpecArg, WorkdirOpt, console, open_spec, print_path
from triton_bundle.loadtest.settings import Protocol
from triton_bundle.loadtest.stage import Overrides
from triton_bundle.loadtest.tune import TuneResult, TuneSpace, TuneUsageError, pick_best


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TuneUsageError(f"--{what} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise TuneUsageError(f"--{what} needs non-negative integers, got {text!r}")
    return values


def _positive(values: list[int], what: str) -> list[int]:
    if min(values) < 1:
        raise TuneUsageError(f"--{what} needs integers >= 1, got {values}")
    return values


def _preferred(text: str) -> list[list[int]]:
    """'none;4,8;8' -> [[], [4, 8], [8]] (each ';'-separated item is one choice)."""
    choices = []
    for item in (v.strip() for v in text.split(";")):
        if item in ("", "none", "-"):
            choices.append([])
            continue
        choices.append(_positive(_ints(item, "preferred"), "preferred"))
    return choices


def _print(result: TuneResult) -> None:
    table = Table(
        title=f"{result.model}: {len(result.trials)} trials, {result.users} users, {result.duration_s:g} s"
    )
    for column in ("#", "options", "result", "req/s", "p50 ms", "p95 ms", "queue ms", "compute ms"):
        table.add_column(column, justify="left" if column in ("options", "result") else "right")
    best = pick_best(result.trials)
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    for number, t in enumerate(result.trials, start=1):
        verdict = "[green]pass" if t.passed else "[red]FAIL"
        mark = " [bold]*best*[/]" if t is best else ""
        table.add_row(
            str(number), t.options.label + mark, verdict, f"{t.rps:.1f}", fmt(t.p50_ms), fmt(t.p95_ms),
            fmt(t.queue_ms), fmt(t.compute_ms),
        )  # fmt: skip
    console.print(table)
    console.print(result.note)
    if result.best is not None:
        console.print("spec snippet (repository options):")
        console.print(result.best.snippet(), markup=False, highlight=False)


def tune_command(
    spec_path: SpecArg,
    delays: Annotated[
        str, typer.Option(help="max_queue_delay_us values to try (comma-separated)")
    ] = "0,500,2000",
    preferred: Annotated[
        str,
        typer.Option(help="preferred batch sizes to try: ';'-separated choices, 'none' for no preference"),
    ] = "none",
    instances: Annotated[str, typer.Option(help="tensor-model instance counts to try")] = "1,2",
    threads: Annotated[
        str, typer.Option(help="onnxruntime threads per instance to try (0: cores / instances)")
    ] = "0",
    users: Annotated[
        int | None, typer.Option("--users", "-u", min=1, help="load [default: spec loadtest]")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", "-t", min=0.5, help="seconds per trial")
    ] = None,
    max_trials: Annotated[int, typer.Option(min=1, help="refuse a grid with more combinations")] = 12,
    protocol: Annotated[Protocol | None, typer.Option(help="http or grpc [default: spec]")] = None,
    workdir: WorkdirOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="[default: <workdir>/tune]")] = None,
    force: ForceOpt = False,
) -> None:
    """Try each combination against a local Triton under the spec's SLOs; print the winner as a spec snippet."""
    from triton_bundle.loadtest.tune import tune_stage

    spec, workdir = open_spec(spec_path, workdir)
    space = TuneSpace(
        max_queue_delay_us=_ints(delays, "delays"),
        preferred_batch_sizes=_preferred(preferred),
        instances=_positive(_ints(instances, "instances"), "instances"),
        intra_op_threads=_ints(threads, "threads"),
    )
    overrides = Overrides(users=users, duration_s=duration, protocol=protocol, max_requests=10_000_000)
    with console.status("tuning: one local Triton and one load test per trial ..."):
        result = tune_stage(
            spec, workdir, space, max_trials=max_trials, overrides=overrides, out=out, force=force
        )
    _print(result)
    print_path("report", (out or workdir / "tune") / "tune.md", console)
    raise typer.Exit(0 if result.best is not None else 1)
