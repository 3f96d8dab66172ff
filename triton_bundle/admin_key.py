"""The key for Triton's restricted admin APIs (statistics, model repository, shared memory).

The NVIDIA-host and Kubernetes configs start Triton with `--http-restricted-api` /
`--grpc-restricted-protocol`; the bundle's client and load-test scraper send the key when it is set
in the environment (`TRITON_ADMIN_KEY`, or a file named by `TRITON_ADMIN_KEY_FILE`: a mounted secret).
"""

from __future__ import annotations

import os
from pathlib import Path

KEY_ENV = "TRITON_ADMIN_KEY"
KEY_FILE_ENV = "TRITON_ADMIN_KEY_FILE"
HTTP_HEADER = "triton-admin-key"
# Triton prefixes gRPC restricted-protocol headers with "triton-grpc-protocol-".
GRPC_HEADER = "triton-grpc-protocol-triton-admin-key"


def admin_key() -> str | None:
    key = os.environ.get(KEY_ENV, "").strip()
    if not key and os.environ.get(KEY_FILE_ENV):
        path = Path(os.environ[KEY_FILE_ENV])
        key = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return key or None


def admin_headers(protocol: str) -> dict[str, str]:
    """Headers that unlock the restricted APIs, or none when no key is configured."""
    key = admin_key()
    if key is None:
        return {}
    return {GRPC_HEADER if protocol == "grpc" else HTTP_HEADER: key}
