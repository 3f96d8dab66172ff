"""Python client for a served bundle: HTTP or gRPC, blocking or asyncio, typed per-task helpers.

from triton_bundle.client import TritonClient
with TritonClient("grpc://127.0.0.1:8001") as client:
    for result in client.classify("minilm-intent", ["where is my order?"]):
        print(result.labels[0], result.scores[0])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names -> the module that defines them. Loaded on first use, so importing the package (the CLI
# does, for `triton-bundle --help`) stays cheap.
_EXPORTS = {
    "AsyncTritonClient": "client",
    "Classification": "tasks",
    "ClientError": "errors",
    "ClientOptions": "client",
    "ClientTimeoutError": "errors",
    "Embeddings": "tasks",
    "Endpoint": "connection",
    "Entity": "tasks",
    "EndpointError": "errors",
    "ImageClassification": "tasks",
    "InferenceResult": "tasks",
    "InvalidInputError": "errors",
    "ModelMetadata": "metadata",
    "ModelState": "client",
    "ModelStatistics": "stats",
    "RetryEvent": "retry",
    "RetryPolicy": "retry",
    "ServerRejectedError": "errors",
    "ServerUnavailableError": "errors",
    "SharedMemoryError": "errors",
    "TensorMetadata": "metadata",
    "TokenTags": "tasks",
    "TritonClient": "client",
    "parse_endpoint": "connection",
}

if TYPE_CHECKING:
    from triton_bundle.client.client import AsyncTritonClient, ClientOptions, ModelState, TritonClient
    from triton_bundle.client.connection import Endpoint, parse_endpoint
    from triton_bundle.client.errors import (
        ClientError,
        ClientTimeoutError,
        EndpointError,
        InvalidInputError,
        ServerRejectedError,
        ServerUnavailableError,
        SharedMemoryError,
    )
    from triton_bundle.client.metadata import ModelMetadata, TensorMetadata
    from triton_bundle.client.retry import RetryEvent, RetryPolicy
    from triton_bundle.client.stats import ModelStatistics
    from triton_bundle.client.tasks import (
        Classification,
        Embeddings,
        Entity,
        ImageClassification,
        InferenceResult,
        TokenTags,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'triton_bundle.client' has no attribute {name!r}")
    return getattr(importlib.import_module(f"triton_bundle.client.{_EXPORTS[name]}"), name)


__all__ = [
    "AsyncTritonClient",
    "Classification",
    "ClientError",
    "ClientOptions",
    "ClientTimeoutError",
    "Embeddings",
    "Endpoint",
    "EndpointError",
    "Entity",
    "ImageClassification",
    "InferenceResult",
    "InvalidInputError",
    "ModelMetadata",
    "ModelState",
    "ModelStatistics",
    "RetryEvent",
    "RetryPolicy",
    "ServerRejectedError",
    "ServerUnavailableError",
    "SharedMemoryError",
    "TensorMetadata",
    "TokenTags",
    "TritonClient",
    "parse_endpoint",
]
