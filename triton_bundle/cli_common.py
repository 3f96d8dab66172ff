"""Options and helpers every stage's CLI shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from triton_bundle.spec import ModelSpec, load_spec

console = Console()

SpecArg = Annotated[
    Path, typer.Argument(metavar="SPEC", help="the model's spec file (YAML)", show_default=False)
]
WorkdirOpt = Annotated[
    Path | None, typer.Option("--workdir", "-w", help="artifacts directory [default: artifacts/<name>]")
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="replace existing artifacts")]


def open_spec(spec_path: Path, workdir: Path | None) -> tuple[ModelSpec, Path]:
    spec = load_spec(spec_path)
    return spec, Path(workdir) if workdir else spec.default_workdir()


def print_path(label: str, path: object, out: Console | None = None) -> None:
    """`label path` on a line of its own, never wrapped or cut at the terminal width: people copy it."""
    from rich.markup import escape

    (out or console).print(f"{label} {escape(str(path))}", soft_wrap=True, highlight=False)


def titled_table(title: str, **options: object) -> Table:
    """A table at least as wide as its title (up to 80 columns), so narrow tables keep it on one line."""
    return Table(title=title, min_width=min(len(title) + 4, 80), **options)
