"""onnxruntime in-process: each precision variant per batch size and sequence length, model time only.

Sequence "real mix": consecutive held-out texts, each batch padded to its longest text (what the
served path feeds the model). Sequence 128: the same texts padded to 128 tokens (the worst case the
profiles allow). Tokenization is excluded: these rows are the model's share of a request.
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


@dataclass(frozen=True)
class OrtPlan:
    batch_sizes: Sequence[int]
    sequences: Sequence[int | None]  # None: the real mix
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


def time_batches(
    session: ort.InferenceSession, batches: Sequence[Feeds], seconds: float, min_iterations: int
) -> tuple[list[float], int, float]:
    """Per-batch latencies (s), sequences run and wall seconds, cycling through `batches`."""
    for feeds in batches[:2]:
        session.run(None, feeds)  # first runs plan memory for these shapes
    latencies: list[float] = []
    sequences = 0
    started = time.perf_counter()
    deadline = started + seconds
    i = 0
    while time.perf_counter() < deadline or len(latencies) < min_iterations:
        feeds = batches[i % len(batches)]
        t0 = time.perf_counter()
        session.run(None, feeds)
        latencies.append(time.perf_counter() - t0)
        sequences += next(iter(feeds.values())).shape[0]
        i += 1
    return latencies, sequences, time.perf_counter() - started


def padded_lengths(batches: Sequence[Feeds]) -> list[int]:
    lengths: list[int] = []
    for feeds in batches:
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
            for pad_to in plan.sequences:
                batches = heldout.batches(batch, inputs, pad_to)
                latencies, sequences, wall = time_batches(
                    session, batches, plan.seconds_per_cell, plan.min_iterations
                )
                throughput = sequences / wall
                sequence = REAL_MIX if pad_to is None else str(pad_to)
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
                        basis="padded batch shapes run" if pad_to is None else f"{pad_to} tokens",
                    )
                rows.append(row)
                say(
                    f"ort {variant:<13} b{batch:<3} {sequence:<9} {throughput:8.1f} seq/s  "
                    f"p50 {row.latency.p50_ms:7.2f} ms/batch"
                )
    return rows, predictions, notes
