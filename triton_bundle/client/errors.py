"""The client's expected failures; each message says what was wrong and what was expected."""

from __future__ import annotations

from triton_bundle.errors import BundleError


class ClientError(BundleError):
    """Base of every error the client raises on purpose."""


class EndpointError(ClientError, ValueError):
    """A server URL or protocol that cannot be used."""


class InvalidInputError(ClientError, ValueError):
    """Inputs that do not match the model's metadata; caught before anything is sent."""


class ServerRejectedError(ClientError):
    """The server answered with an error that retrying cannot fix (bad input, unknown model, ...)."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnavailableError(ClientError, ConnectionError):
    """The server stayed unreachable or unavailable through every retry."""


class ClientTimeoutError(ClientError, TimeoutError):
    """A request took longer than the client's timeout."""


class SharedMemoryError(ClientError, RuntimeError):
    """System shared memory could not be set up for a request."""


class RaggedOutputError(ClientError, ValueError):
    """The chunks of one split request came back with outputs that cannot be stacked."""
