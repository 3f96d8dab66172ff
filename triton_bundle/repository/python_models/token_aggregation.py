"""Per-token logits -> entities, grouped like Hugging Face's token-classification pipeline.

Pure numpy + `tokenizers`, no Triton import: the token postprocess model copies this file beside its
model.py, and the tests run it directly against `transformers.pipeline("token-classification")`.

The rules follow transformers' TokenClassificationPipeline (gather_pre_entities, aggregate,
aggregate_words, group_entities) for a fast tokenizer, so a served model returns what the pipeline
would, given the same tokens:
  none     one entity per token (label = the token's argmax), with its token index
  simple   adjacent tokens with the same tag (B-/I- prefixes stripped) merged into one entity
  first    each word takes its first token's label, then words are grouped as in simple
  average  each word takes the label of its tokens' mean scores
  max      each word takes the label of its most confident token
Words come from the tokenizer: a WordPiece-style model ("##" continuation) knows them; others use the
pipeline's heuristic (a token that starts right after a non-space character continues a word).
Entities whose label is in `ignore_labels` (default "O") are dropped.

Each entity is a dict: label, score, word (the decoded tokens), start, end (character offsets into the
text, end exclusive) and, for `none`, index (the token's position including special tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = ("first", "average", "max")


class AggregationError(ValueError):
    """An unknown aggregation strategy or inputs that do not line up."""


@dataclass(frozen=True)
class TokenizerView:
    """What the grouping needs from the tokenizer (a `tokenizers.Tokenizer`, read once)."""

    tokenizer: object  # tokenizers.Tokenizer
    unk_id: int  # -1: the tokenizer has no unknown token
    word_aware: bool  # the model marks continuation pieces (WordPiece's "##")

    @classmethod
    def of(cls, tokenizer: object, unk_id: int | None = None) -> TokenizerView:
        model = tokenizer.model  # type: ignore[attr-defined]
        if unk_id is None:
            unk = getattr(model, "unk_token", None)
            found = tokenizer.token_to_id(unk) if unk else None  # type: ignore[attr-defined]
            unk_id = -1 if found is None else int(found)
        return cls(tokenizer, unk_id, bool(getattr(model, "continuing_subword_prefix", None)))

    def token(self, token_id: int) -> str:
        return self.tokenizer.id_to_token(int(token_id)) or ""  # type: ignore[attr-defined]

    def join(self, tokens: list[str]) -> str:
        decoder = self.tokenizer.decoder  # type: ignore[attr-defined]
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)


def check_strategy(strategy: str) -> str:
    chosen = strategy.strip().lower()
    if chosen not in STRATEGIES:
        raise AggregationError(
            f"unknown aggregation strategy '{strategy}': expected one of {', '.join(STRATEGIES)}"
        )
    return chosen


def softmax(logits: np.ndarray) -> np.ndarray:
    """The pipeline's softmax, in float32 over the last axis."""
    logits = logits.astype(np.float32, copy=False)
    shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _pre_entities(
    text: str,
    ids: np.ndarray,
    offsets: np.ndarray,
    special: np.ndarray,
    scores: np.ndarray,
    view: TokenizerView,
) -> list[dict]:
    tokens = []
    for index in range(len(ids)):
        if special[index]:
            continue
        start, end = int(offsets[index][0]), int(offsets[index][1])
        word, reference = view.token(ids[index]), text[start:end]
        if view.word_aware:
            is_subword = len(word) != len(reference)
        else:
            is_subword = start > 0 and " " not in text[start - 1 : start + 1]
        if int(ids[index]) == view.unk_id:
            word, is_subword = reference, False
        tokens.append(
            {
                "word": word,
                "scores": scores[index],
                "start": start,
                "end": end,
                "index": index,
                "is_subword": is_subword,
            }
        )
    return tokens


def _word_entity(group: list[dict], strategy: str, labels: Sequence[str], view: TokenizerView) -> dict:
    if strategy == "first":
        scores = group[0]["scores"]
    elif strategy == "max":
        scores = max(group, key=lambda token: token["scores"].max())["scores"]
    else:
        scores = np.nanmean(np.stack([token["scores"] for token in group]), axis=0)
    best = int(scores.argmax())
    return {
        "label": labels[best],
        "score": scores[best],
        "word": view.join([token["word"] for token in group]),
        "start": group[0]["start"],
        "end": group[-1]["end"],
    }


def _words(tokens: list[dict], strategy: str, labels: Sequence[str], view: TokenizerView) -> list[dict]:
    words, group = [], []
    for token in tokens:
        if group and not token["is_subword"]:
            words.append(_word_entity(group, strategy, labels, view))
            group = []
        group.append(token)
    if group:
        words.append(_word_entity(group, strategy, labels, view))
    return words


def _tag(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label  # not B-/I- tagged: a continuation, as in the pipeline


def _group(members: list[dict], view: TokenizerView) -> dict:
    return {
        "label": members[0]["label"].split("-", 1)[-1],
        "score": np.mean(np.nanmean([m["score"] for m in members])),
        "word": view.join([m["word"] for m in members]),
        "start": members[0]["start"],
        "end": members[-1]["end"],
    }


def _grouped(entities: list[dict], view: TokenizerView) -> list[dict]:
    groups, current = [], []
    for entity in entities:
        if current:
            bi, tag = _tag(entity["label"])
            if tag != _tag(current[-1]["label"])[1] or bi == "B":
                groups.append(_group(current, view))
                current = []
        current.append(entity)
    if current:
        groups.append(_group(current, view))
    return groups


def aggregate(
    text: str,
    ids: np.ndarray,
    offsets: np.ndarray,
    special: np.ndarray,
    logits: np.ndarray,
    labels: Sequence[str],
    strategy: str,
    view: TokenizerView,
    ignore_labels: Sequence[str] = ("O",),
) -> list[dict]:
    """The entities of one text from its token ids, character offsets, special-token mask and logits
    (all [tokens, ...]; padding positions must be marked special)."""
    strategy = check_strategy(strategy)
    if not (len(ids) == len(offsets) == len(special) == len(logits)):
        raise AggregationError(
            f"token rows do not line up: ids {len(ids)}, offsets {len(offsets)}, mask {len(special)}, logits {len(logits)}"
        )
    tokens = _pre_entities(text, ids, offsets, special, softmax(logits), view)
    if strategy in WORD_STRATEGIES:
        entities = _words(tokens, strategy, labels, view)
    else:
        entities = []
        for token in tokens:
            best = int(token["scores"].argmax())
            entity = {"label": labels[best], "score": token["scores"][best], "word": token["word"]}
            entity |= {"start": token["start"], "end": token["end"], "index": token["index"]}
            entities.append(entity)
    if strategy != "none":
        entities = _grouped(entities, view)
    ignored = set(ignore_labels)
    return [{**e, "score": float(e["score"])} for e in entities if e["label"] not in ignored]
