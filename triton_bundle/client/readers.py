"""Texts to send, from a file or stdin: JSON lines, CSV (with a header) or plain lines.

Records stream one at a time so a large file never sits in memory whole.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Literal

from triton_bundle.client.errors import ClientError

InputFormat = Literal["auto", "jsonl", "csv", "lines"]
_SUFFIXES: dict[str, InputFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}


class InputFileError(ClientError, ValueError):
    """A record in the input that cannot be read as text."""


def format_for_path(path: Path) -> InputFormat:
    return _SUFFIXES.get(path.suffix.lower(), "lines")


def _sniff(first_line: str) -> InputFormat:
    return "jsonl" if first_line.lstrip().startswith(("{", '"')) else "lines"


def read_texts(
    lines: Iterable[str], fmt: InputFormat, field: str = "text", source: str = "<stdin>"
) -> Iterator[str]:
    """Yield each record's text from an iterable of lines (an open file, sys.stdin).

    `auto` sniffs the first non-blank line: JSON (an object or a string) or plain text. A file that is
    not UTF-8 (an image, an archive) stops with InputFileError naming it, not a UnicodeDecodeError.
    """
    lines = _utf8(lines, source)
    if fmt == "auto":
        rest = iter(lines)
        head: list[str] = []
        for line in rest:
            head.append(line)
            if line.strip():
                break
        fmt = _sniff(head[-1]) if head else "lines"
        lines = chain(head, rest)
    if fmt == "jsonl":
        yield from _jsonl(lines, field, source)
    elif fmt == "csv":
        yield from _csv(lines, field, source)
    else:
        yield from (line.rstrip("\r\n") for line in lines if line.strip())


def _utf8(lines: Iterable[str], source: str) -> Iterator[str]:
    iterator = iter(lines)
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            bad = exc.object[exc.start : exc.start + 1].hex()
            raise InputFileError(
                f"{source}: not UTF-8 text (byte 0x{bad} cannot be decoded: {exc.reason}); expected texts as "
                "JSON lines, CSV or plain lines (images and .npz tensors go to image and tensor models)"
            ) from None
        yield line


def _jsonl(lines: Iterable[str], field: str, source: str) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(
                f"{source}:{number}: not valid JSON ({exc.msg}); expected one object per line"
            ) from None
        if isinstance(record, str):
            yield record
        elif isinstance(record, dict) and isinstance(record.get(field), str):
            yield record[field]
        else:
            keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
            raise InputFileError(
                f"{source}:{number}: expected a JSON string or an object with a string '{field}' field "
                f"(got: {keys}); pick the field with --field"
            )


def _csv(lines: Iterable[str], field: str, source: str) -> Iterator[str]:
    reader = csv.DictReader(lines)
    if reader.fieldnames is None:
        return
    if field not in reader.fieldnames:
        raise InputFileError(
            f"{source}: the CSV header has no '{field}' column (columns: {', '.join(reader.fieldnames)}); "
            "pick one with --field"
        )
    for row in reader:
        text = row.get(field)
        if text:
            yield text


def count_records(path: Path, fmt: InputFormat, field: str) -> int:
    """Records in a file (one cheap pass, for the progress bar's total)."""
    with open(path, encoding="utf-8", newline="" if fmt == "csv" else None) as fh:
        return sum(1 for _ in read_texts(fh, fmt, field, str(path)))
