"""`triton-bundle doctor`."""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from triton_bundle.cli_common import console


class DoctorTarget(StrEnum):
    local = "local"
    nvidia = "nvidia"


_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def doctor_command(
    target: Annotated[
        DoctorTarget, typer.Option(help="what must work here: local (CPU Triton) or nvidia (GPU + Docker)")
    ] = DoctorTarget.local,
    spec: Annotated[
        Path | None, typer.Option(help="take host and ports from this spec's serving section")
    ] = None,
    port: Annotated[list[int] | None, typer.Option("--port", help="a port to check, repeatable")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the checks as JSON")] = False,
) -> None:
    """What this machine can do (local Triton, ports, GPU, Docker, TensorRT) and what to run next."""
    from triton_bundle.doctor.checks import CheckResult
    from triton_bundle.doctor.run import exit_code, next_steps, run_checks
    from triton_bundle.spec import ServingSpec, load_spec

    target_name = target.value
    serving = load_spec(spec).serving if spec else ServingSpec()
    ports = port or [serving.http_port, serving.grpc_port, serving.metrics_port]
    with console.status("checking this machine"):
        results: list[CheckResult] = run_checks(target_name, serving.host, ports, Path.cwd())  # type: ignore[arg-type]
    if as_json:
        print(json.dumps({"target": target_name, "checks": [asdict(r) for r in results]}, indent=2))
        raise typer.Exit(exit_code(results))
    table = Table(title=f"triton-bundle doctor (target: {target_name})", show_lines=True)
    for column in ("check", "status", "found", "fix"):
        table.add_column(column, overflow="fold")
    for r in results:
        name = r.name + (" *" if r.required else "")
        table.add_row(escape(name), _STYLE[r.status], escape(r.detail), escape(r.fix))
    console.print(table)
    console.print("* required for this target; warnings are what the other target needs")
    steps = next_steps(results)
    if steps:
        console.print("next:")
        for step in steps:
            console.print(f"  {escape(step)}", soft_wrap=True)
    raise typer.Exit(exit_code(results))
