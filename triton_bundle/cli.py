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
from typer.core import TyperGroup

from triton_bundle.commands import register_all


class _Commands(TyperGroup):
    """Click cuts each command's summary to one line ("Fine-tune, export, build the..."); this wraps it."""

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=300)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_Commands,
    name="triton-bundle",
    help="Fine-tuned model -> verified ONNX -> FP16/INT8 variants -> TensorRT -> Triton repository -> "
    "served, load-tested deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Click's plain help for every command and sub-group (they inherit it): rich's option table squeezes
    # five columns into 80 and cuts option names ("--max-queue-dela…") and swallows "[default: ...]" in
    # help text as markup; click's layout wraps help text and never shortens an option name.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
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
