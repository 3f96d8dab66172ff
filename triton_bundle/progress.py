"""Progress for long work: a rich bar on a terminal, a line every 10% in logs (CI, pipes)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int, str], None]]:
    """Yield advance(n, note): moves the bar by n and shows a short note (e.g. the current loss)."""
    if not console.is_terminal:
        done, next_report = 0, max(1, total // 10)

        def log(n: int = 1, note: str = "") -> None:
            nonlocal done, next_report
            done += n
            if done >= next_report or done == total:
                console.print(f"{description}: {done}/{total} {note}".rstrip(), highlight=False)
                next_report = done + max(1, total // 10)

        yield log
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    )
    # stdout stays the caller's: results printed there (JSON lines) must not be captured by the bar.
    with Progress(*columns, console=console, redirect_stdout=False, redirect_stderr=False) as progress:
        task = progress.add_task(description, total=total, note="")

        def advance(n: int = 1, note: str = "") -> None:
            progress.update(task, advance=n, note=note)

        yield advance
