"""`triton-bundle`: one console script, one subcommand per stage.

Each stage package owns its commands in its own `cli.py`; this module only mounts them and turns
the bundle's expected errors into one clear line and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.text import Text

from triton_bundle.commands import register_all

app = typer.Typer(
    name="triton-bundle",
    help="Fine-tuned model -> verified ONNX -> FP16/INT8 variants -> TensorRT -> Triton repository -> "
    "served, load-tested deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
register_all(app)

_err = Console(stderr=True)
TRACEBACK_ENV = "TRITON_BUNDLE_TRACEBACK"


def _fail(message: str, code: int) -> None:
    # Text, not markup: messages quote shapes like [batch, 16] that rich would read as tags.
    _err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Entry point: every failure ends as one clear line on stderr and a non-zero exit.

    The bundle's own errors (what was wrong, what was expected) exit 2, as do file-system errors on a
    path the user gave; anything else is a bug worth a report: one line, exit 1, and the traceback only
    when TRITON_BUNDLE_TRACEBACK=1.
    """
    from triton_bundle.errors import BundleError

    try:
        app()
    except BundleError as exc:
        _fail(str(exc), 2)
    except KeyboardInterrupt:
        _err.print("interrupted")
        sys.exit(130)
    except OSError as exc:  # a path that is missing, unreadable, a directory...
        _fail(str(exc), 2)
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (a bug: rerun with {TRACEBACK_ENV}=1 for the "
            "traceback and report it)",
            1,
        )


if __name__ == "__main__":
    main()
