"""The fields a data file has, and which of them hold the text, the label or the image path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from triton_bundle.data import DataError, read_rows
from triton_bundle.export.image_data import IMAGE_SUFFIXES

# Names people give these fields, most common first; matched case-sensitively (the spec must match).
TEXT_FIELDS = ("text", "sentence", "content", "utterance", "query", "question", "review", "input", "prompt")
LABEL_FIELDS = ("label", "labels", "intent", "class", "category", "target", "tag", "y")
IMAGE_FIELDS = ("image", "image_path", "path", "file", "filename", "img")
_SCAN_ROWS = 2000  # enough to see every field without reading a large file twice


@dataclass
class DataFacts:
    path: Path
    rows: int
    fields: list[str] = field(default_factory=list)  # in first-seen order
    text_field: str | None = None
    label_field: str | None = None
    image_field: str | None = None
    label_values: list[str] = field(default_factory=list)  # sorted distinct labels
    texts: list[str] = field(default_factory=list, repr=False)


def _fields(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:_SCAN_ROWS]:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def _pick(
    path: Path, fields: list[str], given: str | None, candidates: tuple[str, ...], what: str, flag: str
):
    if given is not None:
        if given not in fields:
            raise DataError(
                f"{path} has no '{given}' field ({flag}); its rows have: {', '.join(fields) or 'none'}"
            )
        return given
    for name in candidates:
        if name in fields:
            return name
    raise DataError(
        f"{path} has no {what} field: looked for {', '.join(candidates)}; its rows have: "
        f"{', '.join(fields) or 'none'}. Name the field with {flag} NAME"
    )


def _read(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows found")
    bad = next((i for i, row in enumerate(rows, start=1) if not isinstance(row, dict)), None)
    if bad is not None:
        raise DataError(f'{path}: row {bad} is not an object with named fields (expected {{"text": ...}})')
    return rows


def inspect_text_data(
    path: Path, *, need_label: bool, text_field: str | None = None, label_field: str | None = None
) -> DataFacts:
    """Fields of a text data file (.jsonl / .csv / .txt); the text field must exist, the label when needed."""
    path = Path(path)
    rows = _read(path)
    facts = DataFacts(path=path, rows=len(rows), fields=_fields(rows))
    facts.text_field = _pick(path, facts.fields, text_field, TEXT_FIELDS, "text", "--text-field")
    if need_label or label_field is not None:
        facts.label_field = _pick(path, facts.fields, label_field, LABEL_FIELDS, "label", "--label-field")
    else:  # optional: recorded when present so later gates can use it
        facts.label_field = next((name for name in LABEL_FIELDS if name in facts.fields), None)
    missing = [i for i, row in enumerate(rows, start=1) if facts.text_field not in row]
    if missing:
        raise DataError(
            f"{path}: row {missing[0]} has no '{facts.text_field}' field ({len(missing)} rows lack it)"
        )
    facts.texts = [str(row[facts.text_field]) for row in rows]
    if facts.label_field:
        facts.label_values = sorted(
            {str(r[facts.label_field]) for r in rows if r.get(facts.label_field) is not None}
        )
    return facts


def inspect_image_data(
    path: Path, *, need_label: bool, image_field: str | None = None, label_field: str | None = None
) -> DataFacts:
    """A directory of images (labels from sub-folder names), or .jsonl / .csv rows naming image files."""
    path = Path(path)
    if path.is_dir():
        images = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise DataError(f"{path}: no images found (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        labels = sorted({p.parent.name for p in images if p.parent != path})
        return DataFacts(path=path, rows=len(images), label_values=labels)
    rows = _read(path)
    facts = DataFacts(path=path, rows=len(rows), fields=_fields(rows))
    facts.image_field = _pick(path, facts.fields, image_field, IMAGE_FIELDS, "image path", "--image-field")
    if need_label or label_field is not None:
        facts.label_field = _pick(path, facts.fields, label_field, LABEL_FIELDS, "label", "--label-field")
        facts.label_values = sorted(
            {str(r[facts.label_field]) for r in rows if r.get(facts.label_field) is not None}
        )
    first = Path(str(rows[0][facts.image_field]))
    first = first if first.is_absolute() else path.parent / first
    if not first.is_file():
        raise DataError(
            f"{path}: row 1 names image {first}, which does not exist (paths are relative to the file)"
        )
    return facts
