"""Axis rules every plot the bundle writes follows, so a reader sees the data and not the scale.

- An axis fits its data: counts and latencies start at zero and end a little above the largest value.
- A constant series is shown as a level on a zero-based axis (8 users: 0 to 10), never zoomed until
  matplotlib's autoscale turns rounding noise into a cliff (7.6 to 8.4).
- A reference line (an SLO, a target) is drawn only when it sits near the data; one far above would
  flatten the data into the floor, so it becomes a note in the corner that says where it is.
- Data that spans orders of magnitude gets a log axis (`wants_log`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

HEADROOM = 0.12  # above the largest value, so markers and the top line stay inside the frame
NEAR = 1.5  # a reference line up to this multiple of the data's maximum is drawn in place
LOG_SPAN = 30.0  # max / min beyond which a positive series reads better on a log axis


@dataclass(frozen=True)
class Reference:
    value: float
    label: str
    color: str = "red"
    style: str = "--"


def finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def fit_limits(
    values: Iterable[float | None], zero_based: bool = True, log: bool = False
) -> tuple[float, float]:
    """(low, high) for an axis showing `values`; see the module's rules."""
    data = finite(values)
    if log:
        positive = [v for v in data if v > 0] or [1.0]
        return min(positive) / 1.5, max(positive) * 1.5
    if not data:
        return 0.0, 1.0
    low, high = min(data), max(data)
    if zero_based:
        low, high = min(low, 0.0), max(high, 0.0)
    span = high - low
    if span <= 1e-9 * max(abs(low), abs(high), 1.0):  # constant (not zero-based): around the level
        level = high
        return (0.0, 1.0) if level == 0 else (min(0.0, level * 1.25), max(0.0, level * 1.25))
    return low - (0.0 if zero_based else span * HEADROOM), high + span * HEADROOM


def fit_axis(
    ax, values: Iterable[float | None], axis: str = "y", zero_based: bool = True, log: bool = False
) -> tuple[float, float]:
    limits = fit_limits(values, zero_based, log)
    if log:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    (ax.set_ylim if axis == "y" else ax.set_xlim)(*limits)
    return limits


def wants_log(values: Iterable[float | None]) -> bool:
    positive = [v for v in finite(values) if v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) > LOG_SPAN


def split_references(
    references: Iterable[Reference], data_max: float
) -> tuple[list[Reference], list[Reference]]:
    """(near, far): near ones are drawn as lines; far ones go into a note."""
    near, far = [], []
    for ref in references:
        (near if data_max > 0 and ref.value <= NEAR * data_max else far).append(ref)
    if data_max <= 0:  # no data to compare with: the references are all there is to show
        near, far = far, []
    return near, far


def draw_references(
    ax,
    values: Iterable[float | None],
    references: Iterable[Reference],
    unit: str,
    axis: str = "y",
    log: bool | None = None,
) -> tuple[list[Reference], list[Reference]]:
    """Fit the axis to the data plus the near references; draw those, note the far ones.

    `log`: None picks a log axis when the data spans more than LOG_SPAN (a histogram passes False).
    """
    data = finite(values)
    near, far = split_references(references, max(data, default=0.0))
    line = ax.axhline if axis == "y" else ax.axvline
    for ref in near:
        line(ref.value, color=ref.color, linestyle=ref.style, linewidth=1, label=ref.label)
    log = wants_log(data) if log is None else log
    fit_axis(ax, [*data, *(r.value for r in near)], axis=axis, log=log)
    if far:
        shown = ", ".join(f"{r.label} {r.value:g} {unit}" for r in far)
        note = f"{shown}: above this range (data max {max(data):.3g} {unit})"
        box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 2}
        ax.text(
            0.99,
            0.97,
            note,
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize="small",
            color="red",
            bbox=box,
        )
    return near, far
