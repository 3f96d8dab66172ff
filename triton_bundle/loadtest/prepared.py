"""Requests built once per input and reused, and responses checked without decoding their tensors.

A load generator that serialises every request anew (tensor objects, JSON header, byte-tensor packing)
and decodes every response spends more CPU than a fast server: Locust then measures itself. Here the
HTTP body (KServe v2 binary-tensor extension: JSON header + raw bytes) and the gRPC `ModelInferRequest`
are built the first time an input is drawn and kept per process; the response check reads only the
output names and shapes (the JSON header over HTTP, the protobuf's metadata over gRPC).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from triton_bundle.loadtest.workload import InputArray

# Enough for every text of the default pool at batch 1; larger batches draw combinations that rarely
# repeat, so past this size new requests are built and sent without being kept.
CACHE_LIMIT = 20_000
# And a memory bound: image requests at larger batches would otherwise keep gigabytes of bodies.
CACHE_BYTES = 256 * 2**20
HEADER_LENGTH = "Inference-Header-Content-Length"


class ResponseCheckError(Exception):
    """The server answered, but not with what the request asked for."""


@dataclass(frozen=True)
class HttpRequest:
    body: bytes
    headers: dict[str, str]


class PreparedCache:
    """Built requests keyed by the input values they carry (bounded in entries and bytes)."""

    def __init__(self, limit: int = CACHE_LIMIT, max_bytes: int = CACHE_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self._built: dict[tuple, Any] = {}

    def get(self, inputs: Sequence[InputArray], build: Callable[[Sequence[InputArray]], Any]) -> Any:
        key = input_key(inputs)
        found = self._built.get(key)
        if found is None:
            found = build(inputs)
            size = _size(found)
            if len(self._built) < self.limit and self.bytes + size <= self.max_bytes:
                self._built[key] = found
                self.bytes += size
        return found

    def __len__(self) -> int:
        return len(self._built)


def _size(built: Any) -> int:
    """Bytes a built request holds: an HTTP body, or a protobuf's serialized size."""
    if isinstance(built, HttpRequest):
        return len(built.body)
    byte_size = getattr(built, "ByteSize", None)
    return int(byte_size()) if callable(byte_size) else 0


def input_key(inputs: Sequence[InputArray]) -> tuple:
    """The values a request carries, hashable: text / image bytes as themselves, tensors as raw bytes."""
    parts: list[Any] = []
    for item in inputs:
        values = item.array.ravel().tolist() if item.array.dtype == object else item.array.tobytes()
        parts.append((item.name, item.array.shape, tuple(values) if isinstance(values, list) else values))
    return tuple(parts)


def http_request(inputs: Sequence[InputArray], outputs: Sequence[str], auth: dict[str, str]) -> HttpRequest:
    """The body tritonclient.http would send (binary tensors), with its headers, built once."""
    import tritonclient.http as httpclient

    tensors = []
    for item in inputs:
        tensor = httpclient.InferInput(item.name, list(item.array.shape), item.datatype)
        tensor.set_data_from_numpy(item.array, binary_data=True)
        tensors.append(tensor)
    requested = [httpclient.InferRequestedOutput(name, binary_data=True) for name in outputs] or None
    body, json_size = httpclient.InferenceServerClient.generate_request_body(tensors, outputs=requested)
    # identity: Locust's client asks for gzip by default, and Triton would spend CPU compressing.
    headers = {"Content-Type": "application/octet-stream", "Accept-Encoding": "identity", **auth}
    if json_size is not None:
        headers[HEADER_LENGTH] = str(json_size)
    return HttpRequest(body=body if isinstance(body, bytes) else body.encode("utf-8"), headers=headers)


def http_error(status: int, content: bytes) -> Exception:
    """Triton's error answer as the exception tritonclient raises (its status classifies the failure)."""
    from tritonclient.utils import InferenceServerException

    try:
        message = str(json.loads(content).get("error", ""))
    except (ValueError, AttributeError):
        message = content[:500].decode("utf-8", errors="replace")
    return InferenceServerException(msg=message or f"HTTP {status}", status=str(status))


def check_http(content: bytes, header_length: str | None, outputs: Sequence[str], batch_size: int) -> None:
    """Every requested output is in the response header with the request's batch dim."""
    raw = content[: int(header_length)] if header_length else content
    try:
        header = json.loads(raw)
    except ValueError:
        raise ResponseCheckError("the response header is not JSON") from None
    shapes = {o.get("name"): o.get("shape") or [] for o in header.get("outputs", [])}
    _check_shapes(shapes, outputs, batch_size)


def grpc_request(model: str, inputs: Sequence[InputArray], outputs: Sequence[str]) -> Any:
    """A ModelInferRequest with raw input contents (what tritonclient.grpc builds per call), built once."""
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import serialize_byte_tensor

    request = service_pb2.ModelInferRequest(model_name=model)
    for item in inputs:
        tensor = request.inputs.add(name=item.name, datatype=item.datatype)
        tensor.shape.extend(item.array.shape)
        if item.datatype == "BYTES":
            raw = serialize_byte_tensor(item.array)
            request.raw_input_contents.append(raw.item() if raw.size else b"")
        else:
            request.raw_input_contents.append(item.array.tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def check_grpc(response: Any, outputs: Sequence[str], batch_size: int) -> None:
    shapes = {o.name: list(o.shape) for o in response.outputs}
    _check_shapes(shapes, outputs, batch_size)


def _check_shapes(shapes: dict[str, list[int]], outputs: Sequence[str], batch_size: int) -> None:
    for name in outputs:
        if name not in shapes:
            raise ResponseCheckError(f"output '{name}' missing from the response")
        shape = shapes[name]
        if not shape or shape[0] != batch_size:
            raise ResponseCheckError(
                f"output '{name}' has shape {list(shape)}; expected batch dim {batch_size}"
            )


def grpc_error(exc: Exception) -> Exception:
    """A gRPC failure as tritonclient raises it: '[StatusCode.X] details' (its status classifies it)."""
    import grpc
    from tritonclient.utils import InferenceServerException

    if not isinstance(exc, grpc.RpcError):
        return exc
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return InferenceServerException(msg=details or "", status=str(code) if code is not None else None)
