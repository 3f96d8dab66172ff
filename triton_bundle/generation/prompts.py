"""Held-out prompts and texts for a text-generation spec (parity, gates, serving tests, load tests)."""

from __future__ import annotations

from dataclasses import dataclass

from triton_bundle.data import load_texts
from triton_bundle.spec import ModelSpec


@dataclass(frozen=True)
class HeldOut:
    texts: list[str]  # whole held-out texts (teacher-forced metrics)
    prompts: list[str]  # the first `prompt_words` words of each text (generation)


def heldout(spec: ModelSpec, limit: int | None = None) -> HeldOut:
    texts = [
        t for t in load_texts(spec.resolve(spec.data.eval), spec.data.text_field, None).texts if t.strip()
    ]
    texts = texts[:limit] if limit else texts
    words = spec.generation.prompt_words
    return HeldOut(texts=texts, prompts=[" ".join(t.split()[:words]) for t in texts])
