"""The entry point every console script shares: a failure ends as one clear line and an exit code.

The bundle's own errors (what was wrong, what was expected) exit 2, as do file-system errors on a path
the user gave; anything else is a bug worth a report: one line, exit 1, and the traceback only when
TRITON_BUNDLE_TRACEBACK=1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from rich.console import Console
from rich.text import Text

from triton_bundle.errors import BundleError

TRACEBACK_ENV = "TRITON_BUNDLE_TRACEBACK"


def fail(message: str, code: int) -> NoReturn:
    """`error: message` in red on stderr, then exit with `code`."""
    # Text, not markup: messages quote shapes like [batch, 16] that rich would read as tags.
    Console(stderr=True).print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    sys.exit(code)


def run_entry(command: Callable[[], object]) -> None:
    """Run a console script's body (a typer app, `lambda: typer.run(f)`, an argparse main)."""
    try:
        result = command()
    except BundleError as exc:
        fail(str(exc), 2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)
    except OSError as exc:  # a path that is missing, unreadable, a directory...
        fail(str(exc), 2)
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        fail(
            f"unexpected {type(exc).__name__}: {exc} (a bug: rerun with {TRACEBACK_ENV}=1 for the "
            "traceback and report it)",
            1,
        )
    if isinstance(result, int) and not isinstance(result, bool):
        sys.exit(result)  # an argparse-style main returns its exit code
