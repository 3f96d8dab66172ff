"""Console output every command and the demo share: whole paths, tables that keep their title."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


def print_path(label: str, path: object, out: Console | None = None) -> None:
    """`label path` on a line of its own, never wrapped or cut at the terminal width: people copy it."""
    from rich.markup import escape

    (out or console).print(f"{label} {escape(str(path))}", soft_wrap=True, highlight=False)


def titled_table(title: str, **options: object) -> Table:
    """A table at least as wide as its title (up to 80 columns), so narrow tables keep it on one line."""
    return Table(title=title, min_width=min(len(title) + 4, 80), **options)
