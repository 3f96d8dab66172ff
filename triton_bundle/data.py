"""Labelled text data from the spec: JSON lines or CSV, one example per line."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from triton_bundle.errors import BundleError


class DataError(BundleError):
    """A data file that is missing, empty or lacks the fields the spec names."""


@dataclass(frozen=True)
class TextDataset:
    texts: list[str]
    labels: list[str | None]
    source: Path

    def __len__(self) -> int:
        return len(self.texts)

    def label_names(self) -> list[str]:
        """Distinct labels in class order (when the spec names none): ids numerically, names sorted."""
        from triton_bundle.labels import sort_label_names

        return sort_label_names([label for label in self.labels if label is not None])


def read_rows(path: Path) -> list[dict[str, object]]:
    """Rows of a .jsonl / .csv / .txt data file (a .txt line is one {"text": line} row)."""
    try:
        return _rows(path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected .jsonl, .csv or .txt"
        ) from None


def _rows(path: Path) -> list[dict[str, object]]:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        return rows
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if suffix == ".txt":
        return [{"text": line} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise DataError(f"{path}: unsupported data format '{suffix}' (expected .jsonl, .csv or .txt)")


def load_texts(path: Path | None, text_field: str = "text", label_field: str | None = "label") -> TextDataset:
    """Read texts (and labels when present) from a data file named in the spec."""
    if path is None:
        raise DataError("no data file given: set data.eval (and data.train for fine-tuning) in the spec")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    texts: list[str] = []
    labels: list[str | None] = []
    for number, row in enumerate(read_rows(path), start=1):
        if not isinstance(row, dict) or text_field not in row:
            raise DataError(f"{path}: row {number} has no '{text_field}' field (data.text_field in the spec)")
        texts.append(str(row[text_field]))
        label = row.get(label_field) if label_field else None
        labels.append(None if label is None else str(label))
    if not texts:
        raise DataError(f"{path}: no examples found")
    return TextDataset(texts=texts, labels=labels, source=path)
