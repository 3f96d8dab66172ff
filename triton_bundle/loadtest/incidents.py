"""What went wrong during a run, in words: when requests started failing, why, and whether they recovered.

A load test against a server that dies must not end with a wall of "Connection refused" counts: the
report says from when to when requests failed and what the errors point at (the server gone, the
server refusing the requests, or the requests timing out). Built from the per-second client timeline
and the error counts; the server scraper's errors tell whether the server's own endpoints went dark too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from triton_bundle.loadtest.metrics_scraper import ServerSummary
from triton_bundle.loadtest.results import LocustSummary, TimelinePoint, timeline_points

Cause = Literal["server unreachable", "server stopping", "timeouts", "rejected requests"]
FAILING_SHARE = 0.5  # a second counts as failing when at least this share of its requests failed

# Substrings of tritonclient / geventhttpclient / gRPC errors, most specific first.
_CAUSES: tuple[tuple[Cause, tuple[str, ...]], ...] = (
    ("server stopping", ("server is stopping", "no available versions")),
    (
        "server unreachable",
        (
            "connection refused",
            "connection closed",
            "connection reset",
            "broken pipe",
            "failed to connect",
            "unavailable",
            "socket closed",
            "502",
            "503",
            "504",
        ),
    ),
    ("timeouts", ("timed out", "timeout", "deadline")),
)
_EXPLANATIONS: dict[Cause, str] = {
    "server unreachable": "the server refused or dropped connections: it stopped, crashed or restarted",
    "server stopping": "the server answered that it was shutting down",
    "timeouts": "requests timed out: the server was overloaded or hung",
    "rejected requests": "the server rejected the requests (see the errors below)",
}


class Incident(BaseModel):
    """One stretch of the run in which most requests failed."""

    start_s: float
    end_s: float | None  # None: the run ended before requests succeeded again
    requests: int
    failures: int
    cause: Cause
    top_error: str

    def describe(self) -> str:
        until = "the end of the run" if self.end_s is None else f"{self.end_s:.0f} s"
        text = (
            f"from {self.start_s:.0f} s to {until}: {self.failures} of {self.requests} requests failed; "
            f"{_EXPLANATIONS[self.cause]} (most frequent error: `{self.top_error[:160]}`)"
        )
        if self.end_s is not None:
            text += f"; requests succeeded again from {self.end_s:.0f} s"
        return text


def cause_of(errors: list[str]) -> Cause:
    """The cause the errors point at: the most frequent error (the first) decides."""
    lowered = errors[0].lower() if errors else ""
    for cause, needles in _CAUSES:
        if any(needle in lowered for needle in needles):
            return cause
    return "rejected requests"


def _failing(point: TimelinePoint) -> bool:
    return point.rps > 0 and point.failures_per_s >= FAILING_SHARE * point.rps


def find_incidents(client: LocustSummary) -> list[Incident]:
    """Stretches of mostly failing seconds; seconds without completions inside one belong to it (users
    pause while the server is unreachable)."""
    points = timeline_points(client.timeline, client.started_at)
    errors = [e.error for e in client.errors]
    cause, top = cause_of(errors), (errors[0] if errors else "unknown")
    incidents: list[Incident] = []
    open_at: int | None = None
    for index, point in enumerate(points):
        if _failing(point) and open_at is None:
            open_at = index
        elif open_at is not None and point.rps > 0 and not _failing(point):
            incidents.append(_incident(points[open_at:index], point.t_s, cause, top))
            open_at = None
    if open_at is not None:
        incidents.append(_incident(points[open_at:], None, cause, top))
    return incidents


def _incident(points: list[TimelinePoint], end_s: float | None, cause: Cause, top: str) -> Incident:
    return Incident(
        start_s=max(0.0, points[0].t_s),
        end_s=end_s,
        requests=sum(p.rps for p in points),
        failures=sum(p.failures_per_s for p in points),
        cause=cause,
        top_error=top,
    )


def what_happened(client: LocustSummary, server: ServerSummary) -> list[str]:
    """Markdown bullet lines for the report; empty when nothing went wrong."""
    lines = [f"- {incident.describe()}" for incident in find_incidents(client)]
    unreachable = [e for e in server.scrape_errors if "refused" in e.lower() or "unreachable" in e.lower()]
    if lines and unreachable:
        lines.append(
            f"- the server's statistics / metrics endpoints were unreachable too: `{unreachable[0][:200]}`"
        )
    if lines:
        lines.append(
            f"- the run was not held up by it: it stopped because {client.stop_reason}, "
            "and every failed request is counted above and in the error table"
        )
    return lines
