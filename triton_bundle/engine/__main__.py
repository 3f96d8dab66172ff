"""`python -m triton_bundle.engine build SPEC ...`: the engine stage alone.

Runs from a checkout without installing the bundle or the other stages' dependencies, which is how
the NVIDIA TensorRT container builds engines (see builder.container_command).
"""

from __future__ import annotations

import typer

from triton_bundle.engine.cli import build_command
from triton_bundle.entry import run_entry

app = typer.Typer(name="triton_bundle.engine", add_completion=False, pretty_exceptions_enable=False)
app.command("build")(build_command)


@app.callback()
def _group() -> None:
    """TensorRT engines for a triton-bundle spec."""


def main() -> None:
    run_entry(app)


if __name__ == "__main__":
    main()
