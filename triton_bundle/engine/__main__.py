"""`python -m triton_bundle.engine build SPEC ...`: the engine stage alone.

Runs from a checkout without installing the bundle or the other stages' dependencies, which is how
the NVIDIA TensorRT container builds engines (see builder.container_command).
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from triton_bundle.engine.cli import build_command
from triton_bundle.errors import BundleError

app = typer.Typer(name="triton_bundle.engine", add_completion=False, pretty_exceptions_enable=False)
app.command("build")(build_command)


@app.callback()
def _group() -> None:
    """TensorRT engines for a triton-bundle spec."""


def main() -> None:
    try:
        app()
    except BundleError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
