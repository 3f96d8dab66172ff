"""The floors a run must hold, each from rows measured in the same run, and where the time goes.

1. Throughput floor: served INT8 at 8 concurrent clients >= 6x the PyTorch-eager HTTP baseline's
   throughput at 8 clients, with a p95 no higher than the baseline's there.
2. Latency floor: served INT8 p50 at 1 client <= 4 ms on the held-out data's real length mix.
3. Dynamic batching gives >= 1.3x the throughput of no batching at concurrency 16, with at most 2x
   the p50 latency (same precision, same instance count).
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.results import Row, TargetCheck

SPEEDUP_TARGET = 6.0
SPEEDUP_CONCURRENCY = 8
P50_FLOOR_MS = 4.0
SPEEDUP_NAME = "served INT8 vs PyTorch-eager HTTP baseline"
P50_NAME = "served INT8 p50 at 1 client"
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


def request_split(row: Row) -> tuple[float, float, float] | None:
    """Per request: Triton queue and compute summed over the ensemble's steps, and the rest of the mean
    latency (HTTP, the ensemble's routing, stub <-> server copies, the client): the hops' overhead."""
    steps = [s for s in row.stages if s.compute_ms is not None]
    if not steps:
        return None
    queue = sum(s.queue_ms or 0.0 for s in steps)
    compute = sum(s.compute_ms or 0.0 for s in steps)
    return queue, compute, max(0.0, row.latency.mean_ms - queue - compute)


def _at(rows: Sequence[Row], concurrency: int) -> list[Row]:
    return [r for r in rows if r.concurrency == concurrency]


def speedup_target(baseline: Sequence[Row], served: Sequence[Row], cores: int) -> TargetCheck:
    """Floor 1: the best served INT8 row at 8 clients against the baseline at 8 clients (its peak
    when 8 was not measured)."""
    c = SPEEDUP_CONCURRENCY
    required = f">= {SPEEDUP_TARGET:g}x the baseline's throughput at {c} clients with <= its p95"
    int8 = _at([r for r in served if _is_int8(r)], c)
    if not baseline or not int8:
        return TargetCheck(
            name=SPEEDUP_NAME, passed=None, measured=f"not measured at {c} clients", required=required
        )
    base = max(_at(baseline, c) or baseline, key=lambda r: r.throughput)
    eligible = [r for r in int8 if r.latency.p95_ms <= base.latency.p95_ms]
    best = max(eligible or int8, key=lambda r: r.throughput)
    ratio = best.throughput / base.throughput if base.throughput else float("inf")
    passed = bool(eligible) and ratio >= SPEEDUP_TARGET
    measured = (
        f"{ratio:.2f}x: {best.name} c{best.concurrency} {best.throughput:.1f} req/s p95 {best.latency.p95_ms:.1f} ms "
        f"vs baseline c{base.concurrency} {base.throughput:.1f} req/s p95 {base.latency.p95_ms:.1f} ms"
    )
    if not eligible:
        measured += " (no served INT8 row reached the baseline's p95)"
    notes = [] if passed else where_time_goes(best, cores) + where_time_goes(base, cores)
    return TargetCheck(
        name=SPEEDUP_NAME, passed=passed, measured=measured, required=required, where_time_goes=notes
    )


def p50_target(served: Sequence[Row], cores: int) -> TargetCheck:
    """Floor 2: the lowest p50 of a served INT8 row at 1 client."""
    required = f"p50 <= {P50_FLOOR_MS:g} ms at 1 client (real length mix)"
    single = _at([r for r in served if _is_int8(r)], 1)
    if not single:
        return TargetCheck(name=P50_NAME, passed=None, measured="not measured at 1 client", required=required)
    best = min(single, key=lambda r: r.latency.p50_ms)
    split = request_split(best)
    measured = f"{best.latency.p50_ms:.2f} ms: {best.name} ({best.throughput:.1f} req/s)"
    if split is not None:
        measured += f"; per request queue {split[0]:.2f} + compute {split[1]:.2f} + hops {split[2]:.2f} ms"
    passed = best.latency.p50_ms <= P50_FLOOR_MS
    return TargetCheck(
        name=P50_NAME,
        passed=passed,
        measured=measured,
        required=required,
        where_time_goes=[] if passed else where_time_goes(best, cores),
    )


def expected_padded_width(lengths: Sequence[int], batch: float) -> float:
    """E[longest of `batch` texts drawn from `lengths`]: the width a batch pads to (exact, with
    replacement: P(max <= x) = F(x)^batch)."""
    if not lengths:
        return 0.0
    ordered = sorted(lengths)
    values = sorted(set(ordered))
    expected, below = 0.0, 0.0
    for value in values:
        share = sum(1 for v in ordered if v <= value) / len(ordered)
        expected += value * (share**batch - below**batch)
        below = share
    return expected


def padding_lines(batched: Row, lengths: Sequence[int], ort: Sequence[Row]) -> list[str]:
    """Why a dynamic batch costs more per request than a single one: padding to its longest text."""
    model = max(
        (s for s in batched.stages if s.avg_batch_size and s.compute_ms is not None),
        key=lambda s: s.compute_ms or 0.0,
        default=None,
    )
    if model is None or not lengths or (model.avg_batch_size or 1.0) < 1.5:
        return []
    batch = model.avg_batch_size or 1.0
    width = expected_padded_width(lengths, batch)
    mean = sum(lengths) / len(lengths)
    lines = [
        f"padding: the runner pads a ragged batch to its longest text; batches of {batch:.1f} held-out "
        f"texts pad to ~{width:.0f} tokens vs {mean:.1f} real on average, so ~{1 - mean / width:.0%} of "
        f"the model's tokens are padding (and attention grows with the square of the width); "
        f"{sum(1 for v in lengths if v >= max(lengths))} of {len(lengths)} texts are {max(lengths)} tokens long"
    ]
    grouped = {
        (r.batch_size, r.sequence): r
        for r in ort
        if r.variant == batched.variant and r.sequence in ("real mix", "length-grouped")
    }
    for size in sorted({b for b, _ in grouped}, reverse=True):
        plain, split = grouped.get((size, "real mix")), grouped.get((size, "length-grouped"))
        if plain and split:
            lines.append(
                f"in-process {batched.variant} batch {size}: {plain.throughput:.0f} seq/s padded to the "
                f"longest vs {split.throughput:.0f} seq/s split into runs of similar length "
                f"({split.throughput / plain.throughput:.1f}x): the fix is in the runner, not the batcher"
            )
            break
    return lines


def batching_targets(
    served: Sequence[Row], cores: int, lengths: Sequence[int] = (), ort: Sequence[Row] = ()
) -> list[TargetCheck]:
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
        delay = batched.settings.get("max_queue_delay_us")
        name = f"dynamic batching{f' {delay}us' if delay is not None else ''}, {batched.variant} x{key[1]}"
        if plain is None:
            continue  # a configuration measured only with batching: nothing to compare it with
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
                else padding_lines(batched, lengths, ort)
                + where_time_goes(batched, cores)
                + where_time_goes(plain, cores),
            )
        )
    if not checks:
        checks.append(
            TargetCheck(
                name="dynamic batching",
                passed=None,
                measured=f"no pair of rows with and without dynamic batching at concurrency {BATCHING_CONCURRENCY}",
                required=required,
            )
        )
    return checks
