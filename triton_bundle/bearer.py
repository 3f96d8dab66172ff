"""The bearer token for inference behind the authenticating proxy (docker/proxy, the Kubernetes sidecar).

The proxy in front of Triton answers 401 without `Authorization: Bearer <token>` on everything but the
health probes. The bundle's client and Locust users send the token when it is set in the environment
(`TRITON_BEARER_TOKEN`, or a file named by `TRITON_BEARER_TOKEN_FILE`: a mounted secret), over HTTP as
a header and over gRPC as call metadata (the same `authorization` key, lower case as gRPC requires).
"""

from __future__ import annotations

import os
from pathlib import Path

from triton_bundle.errors import BundleError

TOKEN_ENV = "TRITON_BEARER_TOKEN"
TOKEN_FILE_ENV = "TRITON_BEARER_TOKEN_FILE"
HEADER = "authorization"


class BearerTokenError(BundleError, ValueError):
    """TRITON_BEARER_TOKEN_FILE names a file that cannot be read."""


def bearer_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token and (file := os.environ.get(TOKEN_FILE_ENV)):
        path = Path(file)
        if not path.is_file():
            raise BearerTokenError(f"{TOKEN_FILE_ENV}={file}: no such file (expected the token, one line)")
        # The first non-comment line: the proxy accepts several (rotation); clients send one.
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        token = next((ln for ln in lines if ln and not ln.startswith("#")), "")
    return token or None


def auth_headers() -> dict[str, str]:
    """The Authorization header (HTTP) / metadata (gRPC), or none when no token is configured."""
    token = bearer_token()
    return {HEADER: f"Bearer {token}"} if token else {}
