"""The texts the student learns from: training data, extra unlabelled text, and augmentations.

Distillation needs more examples than fine-tuning, and the teacher can label any text: the spec's
other data files and cheap, seeded augmentations of the training texts (word dropout, a swap of two
neighbouring words, a dropped span) add examples that carry soft targets only. The held-out eval data
is never used: the gate measures the student on it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from triton_bundle.compress.errors import CompressDataError
from triton_bundle.data import TextDataset, load_texts
from triton_bundle.spec import ModelSpec


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    gold: list[int]  # class id, -1 where there is no gold label
    labelled: int
    extra: int
    augmented: int
    sources: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def training_texts(spec: ModelSpec) -> TextDataset:
    """data.train, else data.calibration: the texts importance is measured on."""
    path = spec.resolve(spec.data.train) or spec.resolve(spec.data.calibration)
    if path is None:
        raise CompressDataError(
            "compress needs training texts: set data.train (or data.calibration) in the spec; data.eval is "
            "held out for the gate and never trained on"
        )
    return load_texts(path, spec.data.text_field, spec.data.label_field)


def gold_ids(labels: list[str | None], names: list[str] | None) -> list[int]:
    """Class ids of gold labels; a label that is an integer index maps to itself (no id2label names)."""
    if not names:
        return [-1] * len(labels)
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for label in labels:
        if label in index:
            ids.append(index[label])
        elif label is not None and label.isdigit() and int(label) < len(names):
            ids.append(int(label))
        else:
            ids.append(-1)
    return ids


def augment(text: str, rng: random.Random, vocabulary: Sequence[str] = ()) -> str:
    """One seeded edit: word dropout, a neighbour swap, a dropped span, a prefix, or word replacement."""
    words = text.split()
    if len(words) < 3:
        return text
    choice = rng.randrange(5 if vocabulary else 4)
    if choice == 0:  # word dropout
        kept = [w for w in words if rng.random() > 0.15]
        words = kept if len(kept) >= 2 else words
    elif choice == 1:  # swap two neighbours
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif choice == 2:  # drop a span of up to a third of the words
        span = rng.randint(1, max(1, len(words) // 3))
        start = rng.randrange(len(words) - span + 1)
        words = words[:start] + words[start + span :]
    elif choice == 3:  # a prefix: the message cut short
        words = words[: rng.randint(2, len(words) - 1)]
    else:  # replace ~15% of the words by words of other training texts
        words = [rng.choice(vocabulary) if rng.random() < 0.15 else w for w in words]
    return " ".join(words)


def mix(first: str, second: str, rng: random.Random) -> str:
    """Two training texts in one: both whole, or the head of one and the tail of the other.

    Usually of different intents, so the teacher's soft labels teach the boundary between them.
    """
    a, b = first.split(), second.split()
    if rng.random() < 0.5 or len(a) < 2 or len(b) < 2:
        return f"{first} {second}"
    return " ".join(a[: rng.randint(1, len(a) - 1)] + b[rng.randint(1, len(b) - 1) :])


def _augmented(texts: Sequence[str], copies: int, mixes: int, seed: int) -> list[str]:
    """`copies` edits and `mixes` mixes per text, seeded; duplicates are left to the caller."""
    rng = random.Random(seed)
    vocabulary = sorted({w for t in texts for w in t.split()})
    out = []
    for text in texts:
        out.extend(augment(text, rng, vocabulary) for _ in range(copies))
        out.extend(mix(text, texts[rng.randrange(len(texts))], rng) for _ in range(mixes))
    return out


def _extra_paths(spec: ModelSpec) -> list[Path]:
    train, evaluation = spec.resolve(spec.data.train), spec.resolve(spec.data.eval)
    paths = [spec.resolve(p) for p in spec.compress.distill.extra] if spec.compress else []
    calibration = spec.resolve(spec.data.calibration)
    if calibration is not None and calibration not in (train, evaluation):
        paths.append(calibration)
    for path in paths:
        if path == evaluation:
            raise CompressDataError(
                f"compress.distill.extra names the held-out data.eval file {path}; the gate measures the "
                "student there, so it must not be trained on"
            )
    return [p for p in paths if p is not None]


def build_corpus(spec: ModelSpec, names: list[str] | None) -> Corpus:
    train = training_texts(spec)
    distill = spec.compress.distill if spec.compress else None
    texts, gold = list(train.texts), gold_ids(list(train.labels), names)
    seen = set(texts)
    extra = 0
    for path in _extra_paths(spec):
        for text in load_texts(path, spec.data.text_field, None).texts:
            if text not in seen:
                seen.add(text)
                texts.append(text)
                gold.append(-1)
                extra += 1
    augmented = 0
    copies, mixes = (distill.augment, distill.mix) if distill else (0, 0)
    for new in _augmented(list(train.texts), copies, mixes, distill.seed if distill else 0):
        if new not in seen:
            seen.add(new)
            texts.append(new)
            gold.append(-1)
            augmented += 1
    return Corpus(
        texts=texts,
        gold=gold,
        labelled=sum(g >= 0 for g in gold),
        extra=extra,
        augmented=augmented,
        sources=[str(train.source)] + [str(p) for p in _extra_paths(spec)],
    )
