"""The issue's targets, each a ratio of two rows measured in the same run, and where the time goes.

1. The served INT8 path sustains >= 3x the PyTorch-eager baseline's peak throughput at a p95 latency
   no higher than the baseline's p95 at that peak.
2. Dynamic batching gives >= 1.3x the throughput of no batching at concurrency 16, with at most 2x
   the p50 latency (same precision, same instance count).
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.results import Row, TargetCheck

SPEEDUP_TARGET = 3.0
BATCHING_TARGET = 1.3
BATCHING_P50_LIMIT = 2.0
BATCHING_CONCURRENCY = 16


def _is_int8(row: Row) -> bool:
    return row.variant.startswith("int8")


def where_time_goes(row: Row, cores: int) -> list[str]:
    """Sentences from the row's server statistics and CPU split."""
    lines = []
    steps = [s for s in row.stages if s.compute_ms is not None]
    if steps:
        parts = ", ".join(
            f"{s.model}: queue {s.queue_ms or 0:.1f} ms + compute {s.compute_ms or 0:.1f} ms"
            + (f" (batches of {s.avg_batch_size:.1f})" if s.avg_batch_size else "")
            for s in steps
        )
        lines.append(f"{row.name} at concurrency {row.concurrency}, per request on the server: {parts}")
    if row.cpu is not None and row.cpu.per_request_ms:
        total = sum(row.cpu.per_request_ms.values())
        parts = ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(row.cpu.per_request_ms.items(), key=lambda kv: -kv[1])
        )
        ceiling = cores * 1000.0 / total if total else float("inf")
        lines.append(
            f"CPU ms per request: {parts} (total {total:.2f} ms; {cores} cores busy at "
            f"{row.cpu.cpu_utilisation:.2f} -> at most ~{ceiling:.0f} req/s if every core did only this)"
        )
    if row.limit is not None:
        lines.append(
            f"matmul roofline: {row.limit.max_sequences_per_s:.0f} seq/s at {row.limit.gflop_per_sequence:.3f} "
            f"GFLOP/seq ({row.limit.int8_share:.0%} INT8); measured {row.limit.fraction_of_limit:.1%} of it"
        )
    return lines


def speedup_target(baseline: Sequence[Row], served: Sequence[Row], cores: int) -> TargetCheck:
    required = f">= {SPEEDUP_TARGET:g}x the baseline's peak throughput at <= its p95"
    int8 = [r for r in served if _is_int8(r)]
    if not baseline or not int8:
        return TargetCheck(
            name="served INT8 vs PyTorch-eager HTTP baseline",
            passed=None,
            measured="not measured",
            required=required,
        )
    peak = max(baseline, key=lambda r: r.throughput)
    eligible = [r for r in int8 if r.latency.p95_ms <= peak.latency.p95_ms] or []
    best = max(eligible or int8, key=lambda r: r.throughput)
    ratio = best.throughput / peak.throughput if peak.throughput else float("inf")
    passed = bool(eligible) and ratio >= SPEEDUP_TARGET
    measured = (
        f"{ratio:.2f}x: {best.name} c{best.concurrency} {best.throughput:.1f} req/s p95 {best.latency.p95_ms:.1f} ms "
        f"vs baseline peak c{peak.concurrency} {peak.throughput:.1f} req/s p95 {peak.latency.p95_ms:.1f} ms"
    )
    if not eligible:
        measured += " (no served INT8 row reached the baseline's p95)"
    notes = [] if passed else where_time_goes(best, cores) + where_time_goes(peak, cores)
    return TargetCheck(
        name="served INT8 vs PyTorch-eager HTTP baseline",
        passed=passed,
        measured=measured,
        required=required,
        where_time_goes=notes,
    )


def batching_targets(served: Sequence[Row], cores: int) -> list[TargetCheck]:
    required = (
        f">= {BATCHING_TARGET:g}x throughput at concurrency {BATCHING_CONCURRENCY} with <= "
        f"{BATCHING_P50_LIMIT:g}x the p50"
    )
    at = [r for r in served if r.concurrency == BATCHING_CONCURRENCY]
    checks = []
    on = [r for r in at if r.settings.get("dynamic_batching")]
    for batched in on:
        key = (batched.variant, batched.settings.get("instances"))
        plain = next(
            (
                r
                for r in at
                if not r.settings.get("dynamic_batching") and (r.variant, r.settings.get("instances")) == key
            ),
            None,
        )
        name = f"dynamic batching, {batched.variant} x{key[1]}"
        if plain is None:
            checks.append(
                TargetCheck(
                    name=name, passed=None, measured="no 'no batching' row to compare", required=required
                )
            )
            continue
        ratio = batched.throughput / plain.throughput if plain.throughput else float("inf")
        p50_ratio = batched.latency.p50_ms / plain.latency.p50_ms if plain.latency.p50_ms else float("inf")
        passed = ratio >= BATCHING_TARGET and p50_ratio <= BATCHING_P50_LIMIT
        checks.append(
            TargetCheck(
                name=name,
                passed=passed,
                measured=(
                    f"{ratio:.2f}x throughput ({batched.throughput:.1f} vs {plain.throughput:.1f} req/s), "
                    f"p50 {p50_ratio:.2f}x ({batched.latency.p50_ms:.1f} vs {plain.latency.p50_ms:.1f} ms)"
                ),
                required=required,
                where_time_goes=[]
                if passed
                else where_time_goes(batched, cores) + where_time_goes(plain, cores),
            )
        )
    if not checks:
        checks.append(
            TargetCheck(
                name="dynamic batching",
                passed=None,
                measured=f"no dynamic-batching row at concurrency {BATCHING_CONCURRENCY}",
                required=required,
            )
        )
    return checks
