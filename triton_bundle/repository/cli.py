"""`triton-bundle repo generate | validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from triton_bundle.cli_common import SpecArg, WorkdirOpt
from triton_bundle.repository.options import Padding, Target

if TYPE_CHECKING:  # onnx and tritonclient load only when a command runs
    from triton_bundle.repository.validate import Problem

app = typer.Typer(help="Generate and validate Triton model repositories.", no_args_is_help=True)
_console = Console()


@app.command()
def generate(
    spec_path: SpecArg,
    target: Annotated[
        Target | None, typer.Option(help="local | nvidia | cpu-container (default: spec)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="default model_repository/<name>")] = None,
    workdir: WorkdirOpt = None,
    version: Annotated[
        list[str] | None,
        typer.Option(
            "--version",
            help="precision variant (fp32, fp16, int8, int8-dynamic) per model version; repeat for side-by-side versions",
        ),
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    max_queue_delay_us: Annotated[int | None, typer.Option(min=0)] = None,
    instances: Annotated[int | None, typer.Option(min=1)] = None,
    padding: Annotated[Padding | None, typer.Option(help="tokenizer padding (default per target)")] = None,
    bucket_size: Annotated[int | None, typer.Option(min=1)] = None,
    cuda_graphs: Annotated[bool | None, typer.Option("--cuda-graphs/--no-cuda-graphs")] = None,
    response_cache: Annotated[bool | None, typer.Option("--response-cache/--no-response-cache")] = None,
    warmup: Annotated[bool | None, typer.Option("--warmup/--no-warmup")] = None,
    gpu: Annotated[
        list[int] | None, typer.Option("--gpu", help="GPU id for GPU instance groups, repeatable")
    ] = None,
    force: Annotated[bool, typer.Option(help="replace an existing repository")] = False,
) -> None:
    """Write the Triton model repository for SPEC (configs via model_config_pb2), then validate it."""
    from triton_bundle.repository.generate import generate
    from triton_bundle.repository.validate import validate_repository
    from triton_bundle.spec import load_spec

    spec = load_spec(spec_path)
    workdir = workdir or spec.default_workdir()
    with _console.status(f"generating the repository for {spec.name} ..."):
        result = generate(
            spec,
            workdir,
            out_dir=out,
            target=target,
            force=force,
            variants=version,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            instances=instances,
            padding=padding,
            bucket_size=bucket_size,
            cuda_graphs=cuda_graphs,
            response_cache=response_cache,
            warmup=warmup,
            gpus=gpu or None,
        )
    repo, details = result.path, result.record.details
    table = Table(title=f"{repo} ({details.target})", show_header=True)
    table.add_column("role")
    table.add_column("model")
    for role, name in details.models.items():
        if name:
            table.add_row(role, name)
    _console.print(table)
    for note in details.notes:
        _console.print(f"[yellow]note:[/] {note}")
    _print_problems([p for p in validate_repository(repo) if p.severity == "warning"])


@app.command()
def validate(
    repository: Annotated[Path, typer.Argument(help="model repository directory")],
    triton_image_tag: Annotated[
        str | None, typer.Option(help="YY.MM of the Triton image that will serve it (checks engine TensorRT)")
    ] = None,
) -> None:
    """Check configs against ONNX graphs / engine manifests, ensemble wiring and TensorRT versions."""
    from triton_bundle.repository.validate import validate_repository

    problems = validate_repository(repository, triton_image_tag=triton_image_tag)
    _print_problems(problems)
    if any(p.severity == "error" for p in problems):
        raise typer.Exit(1)
    _console.print(f"[green]{repository}: no errors[/]")


def _print_problems(problems: list[Problem]) -> None:
    if not problems:
        return
    table = Table(title=f"{len(problems)} problem(s)", show_lines=True)
    for column in ("severity", "model", "file", "problem", "fix"):
        table.add_column(column, overflow="fold")
    for p in problems:
        colour = "red" if p.severity == "error" else "yellow"
        table.add_row(f"[{colour}]{p.severity}[/]", p.model, p.file, p.message, p.fix)
    _console.print(table)
