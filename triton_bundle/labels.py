"""Gold labels against a model's label names: the one place every accuracy number goes through.

Data files write gold labels either as the model's label names (`"label": "positive"`) or as class
ids (`"label": 0`, the GLUE / Hugging Face datasets convention). Ids map through the model's
`id2label` order. A data set whose labels match none of the model's, either way, is an error that
shows a few of each: comparing them would report a made-up accuracy of 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from triton_bundle.errors import BundleError

SHOWN = 5  # labels of each side quoted in an error


class LabelMismatchError(BundleError, ValueError):
    """The data's gold labels and the model's label names share nothing."""


def class_id(value: object) -> int | None:
    """The class id a gold label spells (0, "0", " 2 "), or None when it is a name."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else None


def sort_label_names(labels: Sequence[str]) -> list[str]:
    """Distinct labels in class order: numerically when every one is an id, else alphabetically."""
    distinct = set(labels)
    if distinct and all(class_id(label) is not None for label in distinct):
        return sorted(distinct, key=lambda label: int(label))
    return sorted(distinct)


@dataclass(frozen=True)
class GoldLabels:
    """Each example's gold label as one of the model's names (None: unlabelled or unknown)."""

    names: list[str | None]
    labelled: list[bool]  # the example has a gold label (known to the model or not)
    raw: list[str | None]  # as written in the data
    written_as: Literal["names", "ids", "none"]
    unknown: list[str]  # distinct gold labels the model has no class for (counted as wrong)

    @property
    def complete(self) -> bool:
        """Every example is labelled (what macro-F1 and per-class reports need)."""
        return all(self.labelled)

    def for_scoring(self) -> list[str]:
        """Labelled examples' gold labels; one the model lacks stays a class of its own (a miss)."""
        return [
            name if name is not None else f"<unknown {raw}>"
            for name, raw, has in zip(self.names, self.raw, self.labelled, strict=True)
            if has
        ]


def _via_ids(value: str, names: Sequence[str]) -> str | None:
    index = class_id(value)
    return names[index] if index is not None and 0 <= index < len(names) else None


def _sample(values: Sequence[object]) -> str:
    distinct = list(dict.fromkeys(str(v) for v in values))
    more = f" ... ({len(distinct)} in all)" if len(distinct) > SHOWN else ""
    return ", ".join(repr(v) for v in distinct[:SHOWN]) + more


def map_gold(
    gold: Sequence[object | None], model_labels: Sequence[str], where: str = "the data"
) -> GoldLabels:
    """Gold labels as model label names, by name when they are names, through id2label when ids.

    Decided for the whole data set (whichever reading matches more examples), so a model whose label
    names are themselves digits ("1".."5" stars) still matches by name.
    """
    names = [str(n) for n in model_labels]
    present = [str(g) for g in gold if g is not None]
    if not present or not names:  # nothing to score, or a model without label names: no number at all
        return GoldLabels([None] * len(gold), [False] * len(gold), [None] * len(gold), "none", [])
    known = set(names)
    by_name = sum(g in known for g in present)
    by_id = sum(_via_ids(g, names) is not None for g in present)
    if by_name == 0 and by_id == 0:
        raise LabelMismatchError(
            f"the gold labels in {where} match none of the model's {len(names)} labels: gold labels "
            f"{_sample(present)}; model labels {_sample(names)}. Write gold labels as the model's label "
            f"names or as class ids 0..{len(names) - 1} (id2label order), or set `labels` in the spec"
        )
    written_as: Literal["names", "ids"] = "names" if by_name >= by_id else "ids"

    def one(value: object | None) -> str | None:
        if value is None:
            return None
        text = str(value)
        return (text if text in known else None) if written_as == "names" else _via_ids(text, names)

    mapped = [one(g) for g in gold]
    unknown = sorted({str(g) for g, m in zip(gold, mapped, strict=True) if g is not None and m is None})
    raw = [None if g is None else str(g) for g in gold]
    return GoldLabels(mapped, [g is not None for g in gold], raw, written_as, unknown)


def accuracy(predicted: Sequence[str], gold: GoldLabels) -> float | None:
    """Share of labelled examples predicted as their gold label; None when nothing is labelled.

    A gold label the model has no class for counts as a miss: the model cannot get it right.
    """
    pairs = [(p, g) for p, g, has in zip(predicted, gold.names, gold.labelled, strict=True) if has]
    return sum(p == g for p, g in pairs) / len(pairs) if pairs else None
