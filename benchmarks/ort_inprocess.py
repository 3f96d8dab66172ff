"""onnxruntime in-process: each precision variant per batch size and sequence length, model time only.

Sequence "real mix": consecutive held-out texts, each batch padded to its longest text (what the
served path feeds the model). Sequence 128: the same texts padded to 128 tokens (the worst case the
profiles allow). "length-grouped" (diagnostic, batch > 1): the same real-mix batches, each split into
runs of similar length before running (see `length_groups`), to show what padding to the longest costs.
Tokenization is excluded: these rows are the model's share of a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.heldout import Feeds, Heldout
from benchmarks.loadgen import latency_of
from benchmarks.machine_limits import MatmulWork, cores, limit_for
from benchmarks.results import Accuracy, Row

REAL_MIX = "real mix"
GROUPED = "length-grouped"
# A session.run has a fixed cost whatever its size; in padded tokens it is worth about this many.
RUN_OVERHEAD_TOKENS = 32

SequenceMode = int | str  # a fixed padded length, REAL_MIX or GROUPED
Work = list[Feeds]  # the session runs that make up one batch


@dataclass(frozen=True)
class OrtPlan:
    batch_sizes: Sequence[int]
    sequences: Sequence[SequenceMode]
    seconds_per_cell: float
    min_iterations: int = 3
    threads: int = 0  # 0: every core this process may use


def session_for(path: Path, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict_labels(
    session: ort.InferenceSession, heldout: Heldout, inputs: Sequence[str], labels: Sequence[str], batch: int
) -> list[str]:
    """Top label of every held-out text, batches padded to their longest text."""
    out: list[str] = []
    texts = heldout.texts
    for start in range(0, len(texts), batch):
        feeds = heldout.feeds(texts[start : start + batch], inputs)
        logits = session.run(None, feeds)[0]
        out += [labels[i] for i in np.asarray(logits).argmax(-1).tolist()]
    return out


def length_groups(lengths: Sequence[int], overhead_tokens: int = RUN_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices of one batch split into runs of similar length: sorted by length, then the contiguous
    split that minimises sum(rows x width) + overhead_tokens x runs (exact, O(n^2) for n <= 32)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ordered = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * ordered[end - 1] + overhead_tokens
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups: list[list[int]] = []
    end = len(order)
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def batch_work(heldout: Heldout, batch: int, inputs: Sequence[str], mode: SequenceMode) -> list[Work]:
    """The held-out texts as batches, each batch the session runs it takes in this mode."""
    texts = heldout.texts
    work: list[Work] = []
    for start in range(0, len(texts), batch):
        chunk = [texts[(start + i) % len(texts)] for i in range(batch)]
        if mode == GROUPED:
            lengths = heldout.lengths(chunk)
            work.append(
                [heldout.feeds([chunk[i] for i in group], inputs) for group in length_groups(lengths)]
            )
        else:
            work.append([heldout.feeds(chunk, inputs, None if mode == REAL_MIX else int(mode))])
    return work


def time_batches(
    session: ort.InferenceSession, batches: Sequence[Work], seconds: float, min_iterations: int
) -> tuple[list[float], int, float]:
    """Per-batch latencies (s), sequences run and wall seconds, cycling through `batches`."""
    for runs in batches[:2]:
        for feeds in runs:
            session.run(None, feeds)  # first runs plan memory for these shapes
    latencies: list[float] = []
    sequences = 0
    started = time.perf_counter()
    deadline = started + seconds
    i = 0
    while time.perf_counter() < deadline or len(latencies) < min_iterations:
        runs = batches[i % len(batches)]
        t0 = time.perf_counter()
        for feeds in runs:
            session.run(None, feeds)
        latencies.append(time.perf_counter() - t0)
        sequences += sum(next(iter(feeds.values())).shape[0] for feeds in runs)
        i += 1
    return latencies, sequences, time.perf_counter() - started


def padded_lengths(batches: Sequence[Work]) -> list[int]:
    lengths: list[int] = []
    for runs in batches:
        for feeds in runs:
            rows, width = next(iter(feeds.values())).shape
            lengths += [int(width)] * int(rows)
    return lengths


def run_ort_section(
    variants: dict[str, Path],
    heldout: Heldout,
    inputs: Sequence[str],
    labels: Sequence[str],
    plan: OrtPlan,
    work: dict[str, MatmulWork],
    rates: tuple[float, float],
    say: Callable[[str], None],
    accuracy_batch: int = 32,
) -> tuple[list[Row], dict[str, list[str]], list[str]]:
    """Rows per variant x batch x sequence; the held-out labels per variant; notes on what failed."""
    rows: list[Row] = []
    notes: list[str] = []
    predictions: dict[str, list[str]] = {}
    fp_rate, int8_rate = rates
    threads = plan.threads or cores()
    for variant, path in variants.items():
        try:
            session = session_for(path, threads)
        except Exception as exc:  # an op without a CPU kernel (FP16 on some builds): report, go on
            notes.append(f"ort {variant}: onnxruntime could not load {path} on CPU: {exc}")
            continue
        predictions[variant] = predict_labels(session, heldout, inputs, labels, accuracy_batch)
        reference = predictions.get("fp32", predictions[variant])
        accuracy = Accuracy(
            texts=len(heldout.texts),
            agreement_with_fp32=float(
                np.mean([a == b for a, b in zip(predictions[variant], reference, strict=True)])
            ),
            accuracy=heldout.accuracy(predictions[variant]),
        )
        for batch in plan.batch_sizes:
            for mode in plan.sequences:
                if mode == GROUPED and batch == 1:
                    continue  # one text is one run already
                batches = batch_work(heldout, batch, inputs, mode)
                latencies, sequences, wall = time_batches(
                    session, batches, plan.seconds_per_cell, plan.min_iterations
                )
                throughput = sequences / wall
                sequence = str(mode)
                row = Row(
                    section="ort",
                    name=f"onnxruntime {variant} b{batch} {sequence}",
                    variant=variant,
                    batch_size=batch,
                    sequence=sequence,
                    throughput=round(throughput, 2),
                    latency=latency_of(latencies),
                    requests=len(latencies),
                    accuracy=accuracy,
                    settings={"intra_op_threads": threads, "latency_is": "per batch"},
                )
                if variant in work:
                    row.limit = limit_for(
                        work[variant],
                        padded_lengths(batches),
                        throughput,
                        fp_rate,
                        int8_rate,
                        basis=f"{mode} tokens" if isinstance(mode, int) else "padded shapes run",
                    )
                rows.append(row)
                say(
                    f"ort {variant:<13} b{batch:<3} {sequence:<9} {throughput:8.1f} seq/s  "
                    f"p50 {row.latency.p50_ms:7.2f} ms/batch"
                )
    return rows, predictions, notes
