"""Ports and addresses of the servers the bundle starts and the clients it points at them."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now (another process may still take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def bind_error(host: str, port: int) -> OSError | None:
    """Why a listening socket cannot bind host:port now, or None when it can (SO_REUSEADDR, as servers
    do: a port in TIME_WAIT counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def client_host(host: str) -> str:
    """The address a client dials for a server bound to `host`: a wildcard bind is reached on loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def port_or_free(host: str, port: int) -> int:
    """`port` when nothing listens there, else 0 (the server then picks a free one)."""
    return port if bind_error(host, port) is None else 0
