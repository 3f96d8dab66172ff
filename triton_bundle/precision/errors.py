"""Precision-stage failures, each naming what was wrong and what was expected."""

from __future__ import annotations

from triton_bundle.errors import BundleError


class PrecisionError(BundleError):
    """Base of precision-stage failures."""


class CalibrationDataError(PrecisionError):
    """No usable calibration data (and random data was not explicitly allowed)."""


class UnsupportedPrecisionTaskError(PrecisionError):
    """The exported model's task has no evaluation data path in the precision stage yet."""
