"""`triton-bundle`: one console script, one subcommand per stage.

Each stage package owns its commands in its own `cli.py`; this module only mounts them; `entry.py`
turns the bundle's expected errors into one clear line and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from triton_bundle.commands import register_all
from triton_bundle.entry import run_entry


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


def main() -> None:
    """Entry point: every failure ends as one clear line on stderr and a non-zero exit (see entry.py)."""
    run_entry(app)


if __name__ == "__main__":
    main()
