"""In-process onnxruntime decoding with the exported KV-cache graph (export parity, gates, benchmarks).

The graph takes input_ids / attention_mask / position_ids / past_key_values.* and gives logits /
present.*; a prefill is a call with past length 0. Rows are left-padded so the newest token of every
row sits in the last column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_bundle.export.decoder import ATTENTION_MASK, INPUT_IDS, POSITION_IDS, position_ids_for


@dataclass(frozen=True)
class CacheLayout:
    past_names: list[str]
    present_names: list[str]
    kv_heads: int
    head_dim: int
    dtype: type


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both [batch, longest], padding on the left."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = row
            mask[i, width - len(row) :] = 1
    return ids, mask


class OrtDecoder:
    """One onnxruntime session over a decoder graph; greedy decoding and full-sequence logits."""

    def __init__(self, onnx_path: Path | str, threads: int | None = None, session=None) -> None:
        import onnxruntime as ort

        if session is None:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        past = [name for name in inputs if name.startswith("past_key_values.")]
        if INPUT_IDS not in inputs or not past:
            raise ValueError(f"{onnx_path} is not a KV-cache decoder graph (inputs: {sorted(inputs)})")
        shape = inputs[past[0]].shape
        dtype = np.float16 if "float16" in inputs[past[0]].type else np.float32
        self.layout = CacheLayout(
            past_names=past,
            present_names=[o.name for o in session.get_outputs()][1:],
            kv_heads=int(shape[1]),
            head_dim=int(shape[3]),
            dtype=dtype,
        )

    def empty_past(self, batch: int) -> dict[str, np.ndarray]:
        shape = (batch, self.layout.kv_heads, 0, self.layout.head_dim)
        return {name: np.zeros(shape, self.layout.dtype) for name in self.layout.past_names}

    def run(self, ids: np.ndarray, mask: np.ndarray, past: dict[str, np.ndarray]):
        """(logits float32, past for the next call): mask spans past + new tokens."""
        feeds = {INPUT_IDS: ids, ATTENTION_MASK: mask, POSITION_IDS: position_ids_for(mask, ids.shape[1])}
        outputs = self.session.run(None, feeds | past)
        present = dict(zip(self.layout.past_names, outputs[1:], strict=True))
        return outputs[0].astype(np.float32), present

    def logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Teacher-forced logits of whole sequences (one prefill, no cache reuse)."""
        return self.run(ids, mask, self.empty_past(ids.shape[0]))[0]

    def greedy(
        self, prompts: Sequence[Sequence[int]], new_tokens: int, pad_id: int, eos_id: int | None = None
    ) -> list[list[int]]:
        """Greedy continuations of a batch of prompts with the KV cache; a row stops at eos."""
        ids, mask = left_pad(prompts, pad_id)
        past = self.empty_past(len(prompts))
        generated: list[list[int]] = [[] for _ in prompts]
        done = np.zeros(len(prompts), bool)
        for _ in range(new_tokens):
            logits, past = self.run(ids, mask, past)
            next_ids = logits[:, -1].argmax(-1)
            for row, token in enumerate(next_ids.tolist()):
                if not done[row]:
                    generated[row].append(int(token))
                    done[row] = eos_id is not None and token == eos_id
            if done.all():
                break
            ids = next_ids.reshape(-1, 1).astype(np.int64)
            mask = np.concatenate([mask, np.ones((len(prompts), 1), np.int64)], axis=1)
        return generated
