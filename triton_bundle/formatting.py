"""How numbers read in tables, summaries and reports: one spelling of "missing" and of each unit."""

from __future__ import annotations

MISSING = "n/a"


def ms(value: float | None, digits: int = 1) -> str:
    """`12.3 ms`, or n/a for a value that was not measured."""
    return MISSING if value is None else f"{value:.{digits}f} ms"


def number(value: float | None, digits: int = 1) -> str:
    """`12.3`, or n/a."""
    return MISSING if value is None else f"{value:.{digits}f}"


def percent(share: float | None, digits: int = 0) -> str:
    """A share in 0..1 as `42%`, or n/a."""
    return MISSING if share is None else f"{100 * share:.{digits}f}%"
