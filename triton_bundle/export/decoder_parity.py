"""Parity of a KV-cache decoder graph with PyTorch on real held-out text.

Two proofs: (1) logits and present.* at several (batch, new, past) shapes, prefill (past 0) and decode
(new 1 and new > 1, left-padded rows) alike, so a mask frozen at the traced shape cannot pass; (2) greedy
generation of N tokens with onnxruntime equals PyTorch `generate()` token for token on every prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from triton_bundle.export.decoder import DecoderWithPast, position_ids_for
from triton_bundle.export.report import OutputParity
from triton_bundle.generation.ort_decoder import OrtDecoder, left_pad


@dataclass
class DecoderCase:
    name: str
    feeds: dict[str, np.ndarray]  # in graph input order

    @property
    def shape(self) -> tuple[int, int, int]:
        ids = self.feeds["input_ids"]
        return ids.shape[0], ids.shape[1], self.feeds["attention_mask"].shape[1] - ids.shape[1]


def _feeds(wrapper: DecoderWithPast, ids, mask, past: list[np.ndarray] | None) -> dict[str, np.ndarray]:
    names = wrapper.shape.past_names
    if past is None:
        past = list(wrapper.shape.empty_past(ids.shape[0]).values())
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids_for(mask, ids.shape[1])}
    return feeds | dict(zip(names, past, strict=True))


def run_torch(wrapper: DecoderWithPast, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in wrapper(*[torch.from_numpy(v) for v in feeds.values()])]


def build_cases(wrapper: DecoderWithPast, tokens: list[list[int]], prompt_len: int, pad_id: int):
    """Shape cases from real token rows: prefill at batch 1 and B (left-padded), then decode on its cache."""
    rows = [r for r in tokens if len(r) >= 4] or tokens
    batch = [rows[i % len(rows)] for i in range(max(2, min(4, len(rows))))]
    cut = [max(1, min(prompt_len + i, len(r) - 3)) for i, r in enumerate(batch)]  # ragged prompts
    ids, mask = left_pad([r[:c] for r, c in zip(batch, cut, strict=True)], pad_id)
    prefill = DecoderCase(
        f"prefill batch {len(batch)} (left-padded), past 0", _feeds(wrapper, ids, mask, None)
    )
    past = run_torch(wrapper, prefill.feeds)[1:]
    cases = [
        DecoderCase(
            "prefill batch 1, past 0", _feeds(wrapper, *left_pad([rows[0][:prompt_len]], pad_id), None)
        ),
        DecoderCase("one token, past 0", _feeds(wrapper, *left_pad([rows[0][:1]], pad_id), None)),
        prefill,
    ]
    for new in (1, 3):
        nxt = np.array([r[c : c + new] for r, c in zip(batch, cut, strict=True)], np.int64)
        full = np.concatenate([mask, np.ones((len(batch), new), np.int64)], axis=1)
        cases.append(DecoderCase(f"decode {new} new on the prefill cache", _feeds(wrapper, nxt, full, past)))
    return cases


def compare_cases(wrapper, session, cases: list[DecoderCase], max_abs: float) -> list[OutputParity]:
    """One row for logits and one for all present.* tensors, per case."""
    rows = []
    for case in cases:
        expected = run_torch(wrapper, case.feeds)
        got = session.run(None, case.feeds)
        groups = {"logits": [0], "present.*": list(range(1, len(expected)))}
        for output, indices in groups.items():
            diff = max(float(np.abs(got[i] - expected[i]).max(initial=0.0)) for i in indices)
            scale = max(float(np.abs(expected[i]).max(initial=0.0)) for i in indices)
            rows.append(
                OutputParity(
                    case=f"{case.name} [b{case.shape[0]} n{case.shape[1]} p{case.shape[2]}]",
                    output=output,
                    shape=list(expected[indices[0]].shape),
                    max_abs=diff,
                    max_rel=diff / max(scale, 1e-12),
                    within_tolerance=diff <= max_abs,
                )
            )
    return rows


def torch_greedy(model, prompt: list[int], new_tokens: int, pad_id: int, eos_id: int | None) -> list[int]:
    """PyTorch generate(), greedy, for one prompt: the reference the ONNX decoder must equal."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
        )
    return out[0, len(prompt) :].tolist()


def greedy_matches(model, decoder: OrtDecoder, prompts, new_tokens, pad_id, eos_id) -> list[bool]:
    """Per prompt: ONNX greedy (all prompts in one left-padded batch) == PyTorch generate() (one by one)."""
    onnx_tokens = decoder.greedy(prompts, new_tokens, pad_id, eos_id)
    return [
        got == torch_greedy(model, prompt, new_tokens, pad_id, eos_id)
        for prompt, got in zip(prompts, onnx_tokens, strict=True)
    ]
