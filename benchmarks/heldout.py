"""The held-out data every row is measured on, tokenized the way the served path tokenizes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from triton_bundle.data import load_texts
from triton_bundle.errors import BundleError
from triton_bundle.labels import GoldLabels, map_gold
from triton_bundle.labels import accuracy as gold_accuracy
from triton_bundle.spec import ModelSpec

Feeds = dict[str, np.ndarray]
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class HeldoutError(BundleError, ValueError):
    """The held-out data or the checkpoint's tokenizer cannot be used for benchmarking."""


@dataclass(frozen=True)
class Heldout:
    texts: list[str]
    gold: GoldLabels  # the data's labels as the model's label names (ids map through id2label)
    tokenizer: Tokenizer
    max_length: int

    @classmethod
    def load(cls, spec: ModelSpec, checkpoint: Path, label_names: Sequence[str]) -> Heldout:
        data = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, spec.data.label_field)
        gold = map_gold(data.labels, label_names, where=str(data.source))
        path = Path(checkpoint) / "tokenizer.json"
        if not path.is_file():
            raise HeldoutError(
                f"no fast tokenizer at {path}; the benchmark tokenizes as the served path does"
            )
        tokenizer = Tokenizer.from_file(str(path))
        max_length = spec.shapes.sequence.max
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.no_padding()
        return cls(list(data.texts), gold, tokenizer, max_length)

    def lengths(self, texts: Sequence[str] | None = None) -> list[int]:
        """Token counts (with special tokens, truncated): the real mix of sequence lengths."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts or self.texts))]

    def feeds(self, texts: Sequence[str], inputs: Sequence[str], pad_to: int | None = None) -> Feeds:
        """One batch: padded to its longest text (the real mix), or to `pad_to` tokens."""
        encodings = self.tokenizer.encode_batch(list(texts))
        width = pad_to or max(len(e.ids) for e in encodings)
        pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        arrays = {
            "input_ids": np.full((len(encodings), width), pad_id, np.int64),
            "attention_mask": np.zeros((len(encodings), width), np.int64),
            "token_type_ids": np.zeros((len(encodings), width), np.int64),
        }
        for row, encoding in enumerate(encodings):
            n = min(len(encoding.ids), width)
            arrays["input_ids"][row, :n] = encoding.ids[:n]
            arrays["attention_mask"][row, :n] = encoding.attention_mask[:n]
            arrays["token_type_ids"][row, :n] = encoding.type_ids[:n]
        unknown = [name for name in inputs if name not in arrays]
        if unknown:
            raise HeldoutError(f"the graph takes {unknown}; a text benchmark feeds only {list(TOKEN_INPUTS)}")
        return {name: arrays[name] for name in inputs}

    def batches(self, batch_size: int, inputs: Sequence[str], pad_to: int | None = None) -> list[Feeds]:
        """The held-out texts in order, `batch_size` at a time (the last batch wraps around)."""
        texts = self.texts
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = [texts[(start + i) % len(texts)] for i in range(batch_size)]
            out.append(self.feeds(chunk, inputs, pad_to))
        return out

    def accuracy(self, predicted: Sequence[str]) -> float | None:
        """Share of labelled texts predicted as their gold label (None when none is labelled)."""
        return gold_accuracy(predicted, self.gold)
