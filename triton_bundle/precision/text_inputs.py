"""Texts -> ONNX feeds with the checkpoint's own tokenizer, at natural lengths.

Each batch is padded to its longest text only (never to a fixed length), so calibration ranges and
gate metrics come from the token distributions the model sees in service.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

Feeds = dict[str, np.ndarray]


def load_tokenizer(checkpoint: Path):
    """The tokenizer saved beside the checkpoint (the one the export used)."""
    from transformers import AutoTokenizer

    from triton_bundle.hf import quiet_offline

    quiet_offline()
    return AutoTokenizer.from_pretrained(Path(checkpoint))


def encode_batches(
    tokenizer, texts: Sequence[str], input_names: Sequence[str], batch_size: int, max_length: int
) -> list[Feeds]:
    """Tokenize `texts` in order, `batch_size` at a time, each batch padded to its own longest text."""
    batches: list[Feeds] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        enc = tokenizer(chunk, padding="longest", truncation=True, max_length=max_length, return_tensors="np")
        batches.append({name: np.asarray(enc[name], dtype=np.int64) for name in input_names})
    return batches


def random_batches(
    vocab_size: int,
    input_names: Sequence[str],
    samples: int,
    batch_size: int,
    max_length: int,
    seed: int = 0,
) -> list[Feeds]:
    """Random token ids at random lengths: only for users who explicitly ask for random calibration."""
    rng = np.random.default_rng(seed)
    batches: list[Feeds] = []
    for start in range(0, samples, batch_size):
        rows = min(batch_size, samples - start)
        length = int(rng.integers(4, max_length + 1))
        feeds: Feeds = {}
        for name in input_names:
            if name == "input_ids":
                feeds[name] = rng.integers(0, vocab_size, size=(rows, length), dtype=np.int64)
            elif name == "attention_mask":
                feeds[name] = np.ones((rows, length), dtype=np.int64)
            else:
                feeds[name] = np.zeros((rows, length), dtype=np.int64)
        batches.append(feeds)
    return batches


def count_rows(batches: Sequence[Feeds]) -> int:
    return sum(next(iter(b.values())).shape[0] for b in batches)
