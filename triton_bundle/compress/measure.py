"""Size and speed of a checkpoint: parameters, matmul FLOPs per sequence, bytes on disk, and
in-process onnxruntime time on the held-out texts at their real lengths (batch 1 and 8).

Teacher and student are timed in alternating rounds so load from other processes hits both alike;
each model's best round is reported (the least disturbed one, as timeit does).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from pydantic import BaseModel
from torch import nn

from triton_bundle.export.onnx_export import export_module
from triton_bundle.precision.text_inputs import Feeds, encode_batches

BATCH_SIZES = (1, 8)


class Speed(BaseModel):
    batch: int
    batches: int
    ms_per_batch: float  # median over the batches of the best round
    sequences_per_s: float  # throughput of the best round over the whole length mix


class Size(BaseModel):
    layers: int
    ffn: int
    params: int
    flops_per_sequence: float  # matmul FLOPs (2 per multiply-add) at the mix's mean length
    size_mb: float


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_sequence(layers: int, hidden: int, ffn: int, length: float, head: int = 0) -> float:
    """Q, K, V, O projections + attention scores and mix + two FFN matmuls, per layer; plus the head."""
    per_layer = 2 * length * (4 * hidden * hidden + 2 * hidden * ffn) + 4 * length * length * hidden
    return layers * per_layer + 2 * head


def size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in Path(directory).glob("*.safetensors")) / 1e6


def export_onnx(wrapped: nn.Module, feeds: Feeds, path: Path, output: str, output_axes: dict) -> Path:
    """A scratch ONNX of `wrapped` (the export stage's task wrapper) for timing only."""
    example = {name: torch.from_numpy(v) for name, v in feeds.items()}
    axes = {name: {0: "batch", 1: "sequence"} for name in feeds} | {output: output_axes}
    export_module(wrapped, example, path, [output], axes, fallback=True)
    return path


def length_mix(
    tokenizer, texts: Sequence[str], names: Sequence[str], max_length: int
) -> dict[int, list[Feeds]]:
    """The held-out texts in order, batched at 1 and 8, each batch padded to its longest text."""
    return {b: encode_batches(tokenizer, texts, names, b, max_length) for b in BATCH_SIZES}


def _round(session: ort.InferenceSession, batches: Sequence[Feeds]) -> tuple[float, list[float]]:
    # A graph takes only the inputs its model uses (MPNet and DeBERTa-v3 export no token_type_ids).
    taken = {i.name for i in session.get_inputs()}
    batches = [{name: array for name, array in feeds.items() if name in taken} for feeds in batches]
    times = []
    for feeds in batches:
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return sum(times), times


def throughput(
    models: dict[str, Path], mix: dict[int, list[Feeds]], rounds: int, threads: int | None = None
) -> dict[str, list[Speed]]:
    """Per model, per batch size: best-round throughput over the mix, interleaving the models."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    sessions = {
        name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in models.items()
    }
    out: dict[str, list[Speed]] = {name: [] for name in models}
    for batch, batches in mix.items():
        rows = sum(next(iter(f.values())).shape[0] for f in batches)
        best: dict[str, tuple[float, list[float]]] = {}
        for session in sessions.values():  # warm-up: first runs allocate
            _round(session, batches[:3])
        for _ in range(rounds):
            for name, session in sessions.items():
                total, times = _round(session, batches)
                if name not in best or total < best[name][0]:
                    best[name] = (total, times)
        for name, (total, times) in best.items():
            out[name].append(
                Speed(
                    batch=batch,
                    batches=len(batches),
                    ms_per_batch=float(np.median(times) * 1000),
                    sequences_per_s=rows / total,
                )
            )
    return out


def mean_length(mix: dict[int, list[Feeds]]) -> float:
    masks = [f["attention_mask"] for f in mix[1]]
    return float(np.mean([m.sum() for m in masks]))
