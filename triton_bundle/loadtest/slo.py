"""The release gate: each SLO of the spec checked against a run, with threshold, measurement and margin."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from triton_bundle.loadtest.generation import GenerationSummary
from triton_bundle.loadtest.results import LocustSummary
from triton_bundle.spec import SLOSpec


class SLOCheck(BaseModel):
    """One SLO. margin > 0 is headroom, margin < 0 is by how much it was missed (in `unit`)."""

    name: str
    description: str
    bound: Literal["max", "min"]
    threshold: float
    measured: float | None
    unit: str
    passed: bool
    margin: float | None
    margin_pct: float | None

    def explain(self) -> str:
        if self.measured is None:
            return f"{self.description}: not measured (no requests completed); SLO {self.threshold:g} {self.unit}"
        op = "<=" if self.bound == "max" else ">="
        verdict = "ok" if self.passed else "FAILED"
        by = abs(self.margin or 0.0)
        pct = f", {abs(self.margin_pct):.0f}%" if self.margin_pct is not None else ""
        relation = "headroom" if self.passed else ("over by" if self.bound == "max" else "short by")
        return (
            f"{verdict}: {self.description} {_fmt(self.measured, self.unit)} (SLO {op} "
            f"{_fmt(self.threshold, self.unit)}; {relation} {_fmt(by, self.unit)}{pct})"
        )


class GateResult(BaseModel):
    passed: bool
    checks: list[SLOCheck]

    @property
    def failed(self) -> list[SLOCheck]:
        return [c for c in self.checks if not c.passed]

    def explain(self) -> list[str]:
        return [c.explain() for c in self.checks]


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.2f}%"
    return f"{value:.4g} {unit}"


def _check(
    name: str,
    description: str,
    bound: Literal["max", "min"],
    threshold: float,
    measured: float | None,
    unit: str,
) -> SLOCheck:
    if measured is None:
        return SLOCheck(
            name=name,
            description=description,
            bound=bound,
            threshold=threshold,
            measured=None,
            unit=unit,
            passed=False,
            margin=None,
            margin_pct=None,
        )
    margin = threshold - measured if bound == "max" else measured - threshold
    return SLOCheck(
        name=name,
        description=description,
        bound=bound,
        threshold=threshold,
        measured=measured,
        unit=unit,
        passed=margin >= 0,
        margin=margin,
        margin_pct=100.0 * margin / threshold if threshold else None,
    )


def evaluate(slo: SLOSpec, run: LocustSummary) -> GateResult:
    """Check every SLO the spec sets; latency and throughput need at least one completed request."""
    latency = run.latency
    checks: list[SLOCheck] = []
    for name, label, threshold, measured in (
        ("p50_ms", "p50 latency", slo.p50_ms, latency.p50_ms),
        ("p95_ms", "p95 latency", slo.p95_ms, latency.p95_ms),
        ("p99_ms", "p99 latency", slo.p99_ms, latency.p99_ms),
    ):
        if threshold is not None:
            checks.append(_check(name, label, "max", threshold, measured, "ms"))
    error_pct = None if run.error_rate is None else 100.0 * run.error_rate
    checks.append(_check("max_error_rate", "error rate", "max", 100.0 * slo.max_error_rate, error_pct, "%"))
    if slo.min_rps is not None:
        rps = run.rps if run.requests > 0 else None
        checks.append(_check("min_rps", "throughput", "min", slo.min_rps, rps, "req/s"))
    checks += generation_checks(slo, run.generation)
    return GateResult(passed=all(c.passed for c in checks), checks=checks)


def generation_checks(slo: SLOSpec, gen: GenerationSummary | None) -> list[SLOCheck]:
    """TTFT / inter-token latency percentiles and token-rate floors; unmeasured (no streams) fails."""
    ttft = gen.ttft if gen else None
    itl = gen.itl if gen else None
    latency = (
        ("ttft_p50_ms", "p50 time to first token", slo.ttft_p50_ms, ttft and ttft.p50_ms),
        ("ttft_p95_ms", "p95 time to first token", slo.ttft_p95_ms, ttft and ttft.p95_ms),
        ("ttft_p99_ms", "p99 time to first token", slo.ttft_p99_ms, ttft and ttft.p99_ms),
        ("itl_p50_ms", "p50 inter-token latency", slo.itl_p50_ms, itl and itl.p50_ms),
        ("itl_p95_ms", "p95 inter-token latency", slo.itl_p95_ms, itl and itl.p95_ms),
        ("itl_p99_ms", "p99 inter-token latency", slo.itl_p99_ms, itl and itl.p99_ms),
    )
    checks = [_check(n, d, "max", t, m, "ms") for n, d, t, m in latency if t is not None]
    rates = (
        ("min_tokens_per_s", "output tokens/s (all streams)", slo.min_tokens_per_s, gen and gen.tokens_per_s),
        (
            "min_stream_tokens_per_s",
            "median tokens/s per stream",
            slo.min_stream_tokens_per_s,
            gen and gen.stream_tokens_per_s_p50,
        ),
    )
    checks += [_check(n, d, "min", t, m, "tokens/s") for n, d, t, m in rates if t is not None]
    return checks
