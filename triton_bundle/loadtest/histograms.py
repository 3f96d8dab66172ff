"""Latency histograms: bucketed milliseconds -> counts, mergeable across Locust workers."""

from __future__ import annotations

import math


def bucket_ms(ms: float) -> float:
    """Round a latency to ~2 significant digits (0.1 ms below 10 ms), so histograms stay small."""
    if ms < 10:
        return round(ms, 1)
    if ms < 100:
        return float(round(ms))
    if ms < 1000:
        return float(round(ms, -1))
    return float(round(ms, -2))


def merge_histograms(target: dict[float, int], other: dict[float, int]) -> dict[float, int]:
    for key, count in other.items():
        target[float(key)] = target.get(float(key), 0) + count
    return target


def percentile(histogram: dict[float, int], q: float) -> float | None:
    """The smallest bucket at or below which a fraction q of the samples lie; None without samples."""
    total = sum(histogram.values())
    if total == 0:
        return None
    needed = max(1, math.ceil(q * total))
    seen = 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= needed:
            return key
    return max(histogram)
