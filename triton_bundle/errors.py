"""Expected failures: the CLI prints their message (what was wrong, what was expected) and exits 2."""

from __future__ import annotations


class BundleError(Exception):
    """Base of every error the CLI reports as one line instead of a traceback."""
