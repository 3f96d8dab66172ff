"""`triton-bundle preflight --repository PATH`: refuse to start Triton on engines that cannot run here.

The Triton image's entrypoint runs it before `tritonserver` (as `python3 -m
triton_bundle.serving.preflight_cli`, which works without the rest of the CLI). Exit 0: every engine
fits this container's TensorRT and GPUs (or there are none); exit 2: the message names each engine, what
it was built for, what is present and what to run to rebuild.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from triton_bundle.entry import run_entry
from triton_bundle.serving.preflight import (
    PreflightError,
    PreflightReport,
    check_repository,
    detect_runtime,
    find_engine_manifests,
    require_servable,
)

_console = Console(stderr=True)


def _table(report: PreflightReport) -> Table:
    table = Table(title=f"engines in {report.repository}")
    for column in ("model", "version", "engine", "built for", "status"):
        table.add_column(column)
    for version in report.versions:
        model, number = version.directory.parent.name, version.directory.name
        for engine in version.engines:
            if engine.ok:
                status = "[green]ok[/]" + "".join(f"\n[yellow]{escape(note)}[/]" for note in engine.notes)
            elif version.ok:
                status = "[dim]not used here: " + escape("; ".join(engine.problems)) + "[/]"
            else:
                status = "[red]" + escape("\n".join(engine.problems)) + "[/]"
            table.add_row(model, number, engine.manifest_path.name, escape(engine.built_for), status)
    return table


def preflight_command(
    repository: Annotated[
        Path, typer.Option("--repository", "-r", help="the Triton model repository to check")
    ],
    tensorrt_version: Annotated[
        str | None,
        typer.Option(
            envvar="TRITON_BUNDLE_TENSORRT_VERSION",
            help="the TensorRT version present, instead of detecting it (tensorrt module / libnvinfer)",
        ),
    ] = None,
    compute_capability: Annotated[
        list[str] | None,
        typer.Option(
            envvar="TRITON_BUNDLE_COMPUTE_CAPABILITY",
            help="a GPU's compute capability (repeat per GPU), instead of asking nvidia-smi",
        ),
    ] = None,
) -> None:
    """Check every engine.json in a model repository against this container's TensorRT and GPUs."""
    if not repository.is_dir():
        raise PreflightError(f"model repository {repository} does not exist or is not a directory")
    if not find_engine_manifests(repository):
        _console.print(f"preflight: no TensorRT engines in {repository}; nothing to check")
        return
    runtime = detect_runtime(tensorrt_version, compute_capability)
    report = check_repository(repository, runtime)
    _console.print(_table(report))
    require_servable(report)
    _console.print(f"[green]preflight passed[/]: {report.engine_count} engine(s) fit {runtime.describe()}")


def main() -> None:
    """`python -m triton_bundle.serving.preflight_cli`: the same command without the full CLI."""
    run_entry(lambda: typer.run(preflight_command))


if __name__ == "__main__":
    main()
