"""In-process onnxruntime greedy decoding of the exported decoder, with and without its KV cache.

The graph serves both modes (inputs input_ids, attention_mask, position_ids where present,
past_key_values.*; outputs logits, present.*): with the cache, a prefill then one token per step
feeding `present` back as `past`; without it, every step re-runs the whole sequence with an empty past
(past length 0), i.e. the prefix is recomputed each time. Both must pick the same tokens: the gain is
measured on identical work, and a mismatch is reported, never hidden.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.loadgen import latency_of
from benchmarks.results import Latency

PAST_PREFIX = "past_key_values"
PRESENT_PREFIX = "present"


@dataclass(frozen=True)
class PastInput:
    name: str
    output: str  # the matching present.* output
    shape: tuple[int | str, ...]  # batch and past length symbolic, heads / head size fixed


@dataclass(frozen=True)
class DecoderGraph:
    session: ort.InferenceSession
    has_position_ids: bool
    pasts: tuple[PastInput, ...]

    @classmethod
    def load(cls, path: Path, threads: int) -> DecoderGraph:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        pasts = []
        for name, meta in inputs.items():
            if name.startswith(PAST_PREFIX):
                present = PRESENT_PREFIX + name[len(PAST_PREFIX) :]
                if present not in outputs:
                    raise ValueError(
                        f"{path}: input {name} has no matching output {present} (outputs: {outputs})"
                    )
                pasts.append(PastInput(name, present, tuple(meta.shape)))
        if not pasts or "logits" not in outputs:
            raise ValueError(f"{path}: expected past_key_values.* inputs and logits / present.* outputs")
        return cls(session, "position_ids" in inputs, tuple(pasts))

    def _empty_past(self, batch: int) -> dict[str, np.ndarray]:
        feeds = {}
        for past in self.pasts:
            dims = [d if isinstance(d, int) else 0 for d in past.shape]
            dims[0] = batch
            feeds[past.name] = np.zeros(dims, dtype=np.float32)
        return feeds

    def step(self, ids: np.ndarray, past: dict[str, np.ndarray] | None) -> tuple[int, dict[str, np.ndarray]]:
        """One forward pass for batch 1; the greedy next token and the new cache."""
        past = past if past is not None else self._empty_past(1)
        past_len = next(iter(past.values())).shape[2]
        total = past_len + ids.shape[1]
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, total), dtype=np.int64), **past}
        if self.has_position_ids:
            feeds["position_ids"] = np.arange(past_len, total, dtype=np.int64)[None]
        names = ["logits", *(p.output for p in self.pasts)]
        logits, *presents = self.session.run(names, feeds)
        cache = {p.name: value for p, value in zip(self.pasts, presents, strict=True)}
        return int(logits[0, -1].argmax()), cache


def greedy(
    graph: DecoderGraph, prompt: Sequence[int], new_tokens: int, cache: bool
) -> tuple[list[int], list[float]]:
    """Generated ids and each token's time since the start (seconds)."""
    ids = list(prompt)
    times: list[float] = []
    past = None
    start = time.perf_counter()
    feed = np.array([ids], dtype=np.int64)
    for _ in range(new_tokens):
        token, present = graph.step(feed, past if cache else None)
        ids.append(token)
        times.append(time.perf_counter() - start)
        if cache:
            past, feed = present, np.array([[token]], dtype=np.int64)
        else:
            feed = np.array([ids], dtype=np.int64)  # the whole prefix again
    return ids[len(prompt) :], times


@dataclass(frozen=True)
class OrtGenerationResult:
    kv_cache: bool
    prompts: int
    new_tokens: int
    tokens_per_s: float
    ttft: Latency
    itl: Latency
    same_tokens_as_cache: bool | None = None  # the no-cache run: did it pick the cached run's tokens?


def bench_ort(
    path: Path, prompts: Sequence[Sequence[int]], new_tokens: int, threads: int
) -> list[OrtGenerationResult]:
    graph = DecoderGraph.load(path, threads)
    greedy(graph, prompts[0], 2, cache=True)  # warm-up: first-run allocations are not the cache's cost
    results, reference = [], []
    for cache in (True, False):
        firsts, gaps, total_tokens, total_s, outputs = [], [], 0, 0.0, []
        for prompt in prompts:
            ids, times = greedy(graph, prompt, new_tokens, cache)
            outputs.append(ids)
            firsts.append(times[0])
            gaps += [b - a for a, b in itertools.pairwise(times)]
            total_tokens, total_s = total_tokens + len(ids), total_s + times[-1]
        same = None if cache else outputs == reference
        reference = outputs if cache else reference
        results.append(
            OrtGenerationResult(
                kv_cache=cache,
                prompts=len(prompts),
                new_tokens=new_tokens,
                tokens_per_s=total_tokens / total_s,
                ttft=latency_of(firsts),
                itl=latency_of(gaps),
                same_tokens_as_cache=same,
            )
        )
    return results
