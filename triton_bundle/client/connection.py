"""Where the server is and how to talk to it: a URL (or host:port plus a protocol flag) -> Endpoint.

`http://host:8000`, `https://host`, `grpc://host:8001`, `grpcs://host` pick the protocol from the
scheme; a bare `host:port` takes it from the flag (default http). Missing ports default to Triton's
(8000 HTTP, 8001 gRPC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from triton_bundle.client.errors import EndpointError

Protocol = Literal["http", "grpc"]
PROTOCOLS: tuple[Protocol, ...] = ("http", "grpc")
DEFAULT_PORTS: dict[Protocol, int] = {"http": 8000, "grpc": 8001}
_SCHEMES: dict[str, tuple[Protocol, bool]] = {
    "http": ("http", False),
    "https": ("http", True),
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
}


@dataclass(frozen=True)
class Endpoint:
    """One server address and the protocol used to reach it."""

    protocol: Protocol
    host: str
    port: int
    ssl: bool = False

    @property
    def address(self) -> str:
        """`host:port`, the form tritonclient's constructors take (no scheme)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        scheme = {("http", False): "http", ("http", True): "https", ("grpc", False): "grpc"}.get(
            (self.protocol, self.ssl), "grpcs"
        )
        return f"{scheme}://{self.address}"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(url: str, protocol: str | None = None) -> Endpoint:
    """Parse a server URL; `protocol` ('http' | 'grpc') applies to scheme-less URLs and must agree
    with a scheme when both are given."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise EndpointError(f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    text = url.strip()
    if not text:
        raise EndpointError("empty server URL: expected e.g. http://127.0.0.1:8000 or grpc://127.0.0.1:8001")
    has_scheme = "://" in text
    parts = urlsplit(text if has_scheme else f"//{text}")
    ssl = False
    if has_scheme:
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise EndpointError(
                f"unsupported URL scheme {scheme!r} in {url!r}: expected one of {', '.join(_SCHEMES)}"
            )
        scheme_protocol, ssl = _SCHEMES[scheme]
        if protocol is not None and protocol != scheme_protocol:
            raise EndpointError(
                f"--protocol {protocol} contradicts the URL scheme in {url!r}; "
                f"drop the scheme or use {protocol}://"
            )
        chosen: Protocol = scheme_protocol
    else:
        chosen = protocol or "http"  # type: ignore[assignment]
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EndpointError(f"unexpected path or query in server URL {url!r}: expected scheme://host:port")
    if not parts.hostname:
        raise EndpointError(f"no host in server URL {url!r}: expected e.g. 127.0.0.1:8000")
    try:
        port = parts.port
    except ValueError as exc:
        raise EndpointError(f"bad port in server URL {url!r}: {exc}") from None
    return Endpoint(protocol=chosen, host=parts.hostname, port=port or DEFAULT_PORTS[chosen], ssl=ssl)
