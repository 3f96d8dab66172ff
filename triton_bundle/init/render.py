"""A commented spec.yaml: each top-level key under a comment that says where its value came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Entry:
    key: str
    value: Any
    comment: str = ""  # one or more lines, written above the key


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()] if text else []


def render(header: str, entries: list[Entry]) -> str:
    """YAML with leaf mappings and lists in flow style ({min: 1, ...}), the way the example specs read."""
    lines = _comment(header)
    for entry in entries:
        lines.append("")
        lines += _comment(entry.comment)
        # Flow style for leaves only: a scalar entry stays `key: value`, not `{key: value}`.
        flow = None if isinstance(entry.value, dict | list) else False
        dumped = yaml.safe_dump(
            {entry.key: entry.value}, sort_keys=False, default_flow_style=flow, width=100, allow_unicode=True
        )
        lines += dumped.rstrip("\n").splitlines()
    return "\n".join(lines) + "\n"
