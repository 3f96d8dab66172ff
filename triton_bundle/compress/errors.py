"""Compress-stage failures, each naming the spec field or model part that was wrong."""

from __future__ import annotations

from triton_bundle.errors import BundleError


class CompressError(BundleError):
    """Base of compress-stage failures."""


class UnsupportedFamilyError(CompressError):
    """The model's transformer layers, attention or FFN could not be located by its structure."""


class PruneTargetError(CompressError):
    """A compress.target that removes everything, keeps nothing to remove, or cannot be loaded."""


class CompressDataError(CompressError):
    """No texts to measure importance on or to distill with."""
