"""No payloads in logs, reports or error messages: a request's text or image is named by a short hash
and its length, never quoted.

`fingerprint` is what a log line may carry; `redact` removes the payloads of a request from a message
before it is recorded (a server error that echoes the input, an exception from a user's request).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_MIN_REDACTED_CHARS = 4  # shorter strings (a digit, "ok") would blank out ordinary words


def fingerprint(payload: str | bytes) -> str:
    data = payload.encode("utf-8", "replace") if isinstance(payload, str) else bytes(payload)
    return f"<payload sha256:{hashlib.sha256(data).hexdigest()[:12]} {len(data)} bytes>"


def redact(message: str, payloads: Iterable[str | bytes]) -> str:
    """`message` with every payload it quotes replaced by its fingerprint (longest first)."""
    texts = set()
    for payload in payloads:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        if len(text) >= _MIN_REDACTED_CHARS:
            texts.add(text)
    for text in sorted(texts, key=len, reverse=True):
        if text in message:
            message = message.replace(text, fingerprint(text))
    return message
