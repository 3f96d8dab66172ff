"""One interface over tritonclient's four clients (HTTP / gRPC x sync / asyncio).

The four differ in small ways that leak everywhere if not hidden here: gRPC returns protobufs unless
asked for JSON (and then wraps the config in {"config": ...} and the index in {"models": ...}),
timeouts are a constructor argument for HTTP but a per-call argument for gRPC, the served version
sits in a dict for HTTP and in a protobuf for gRPC. Transports return plain JSON-shaped data that
the typed models in metadata.py / stats.py parse, and numpy arrays for outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from triton_bundle.admin_key import admin_headers
from triton_bundle.bearer import auth_headers
from triton_bundle.client.connection import Endpoint


@dataclass(frozen=True)
class ShmRef:
    """Where an input's bytes wait in a registered system shared memory region."""

    region: str
    byte_size: int
    offset: int = 0


@dataclass(frozen=True)
class TensorPayload:
    """One input ready to send: either the array itself or a shared memory reference."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray | None = None
    shm: ShmRef | None = None


@dataclass(frozen=True)
class RawResult:
    outputs: dict[str, np.ndarray]
    model_version: str


def _modules(protocol: str) -> Any:
    # Imported lazily: the HTTP client pulls in gevent, the gRPC one grpcio.
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def _aio_module(protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc.aio as module
    else:
        import tritonclient.http.aio as module
    return module


def _build_inputs(module: Any, payloads: list[TensorPayload]) -> list[Any]:
    inputs = []
    for payload in payloads:
        infer_input = module.InferInput(payload.name, list(payload.shape), payload.datatype)
        if payload.shm is not None:
            infer_input.set_shared_memory(payload.shm.region, payload.shm.byte_size, payload.shm.offset)
        else:
            infer_input.set_data_from_numpy(payload.array)
        inputs.append(infer_input)
    return inputs


def _served_version(protocol: str, result: Any) -> str:
    response = result.get_response()
    return str(response.model_version if protocol == "grpc" else response.get("model_version", ""))


def _unwrap(protocol: str, payload: Any, key: str) -> Any:
    """gRPC's JSON wraps some answers in one more object than HTTP's."""
    if protocol == "grpc" and isinstance(payload, dict):
        return payload.get(key, [] if key == "models" else {})
    return payload


def _call_kwargs(
    grpc: bool, timeout_s: float, protocol: str, as_json: bool, admin: bool, auth: dict[str, str]
) -> dict[str, Any]:
    """tritonclient keyword arguments: gRPC timeout / JSON answers, the proxy's bearer token, and the
    admin key for restricted APIs."""
    kw: dict[str, Any] = {}
    if grpc:
        kw["client_timeout"] = timeout_s
        if as_json:
            kw["as_json"] = True
    headers = {**auth, **(admin_headers(protocol) if admin else {})}
    if headers:
        kw["headers"] = headers
    return kw


class SyncTransport:
    """Blocking calls over one tritonclient connection. Not thread-safe (tritonclient's HTTP client
    is not): give each thread its own."""

    def __init__(self, endpoint: Endpoint, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._module = _modules(endpoint.protocol)
        self._grpc = endpoint.protocol == "grpc"
        self._auth = auth_headers()  # read once: per request it would re-read a token file
        if self._grpc:
            self._client = self._module.InferenceServerClient(endpoint.address, ssl=endpoint.ssl)
        else:
            self._client = self._module.InferenceServerClient(
                endpoint.address,
                ssl=endpoint.ssl,
                connection_timeout=timeout_s,
                network_timeout=timeout_s,
            )

    def _kw(self, as_json: bool = False, admin: bool = False) -> dict[str, Any]:
        return _call_kwargs(self._grpc, self.timeout_s, self.endpoint.protocol, as_json, admin, self._auth)

    def is_live(self) -> bool:
        return bool(self._client.is_server_live(**self._kw()))

    def is_ready(self) -> bool:
        return bool(self._client.is_server_ready(**self._kw()))

    def is_model_ready(self, model: str, version: str = "") -> bool:
        return bool(self._client.is_model_ready(model, version, **self._kw()))

    def repository_index(self) -> list[dict[str, Any]]:
        return _unwrap(
            self.endpoint.protocol,
            self._client.get_model_repository_index(**self._kw(True, admin=True)),
            "models",
        )

    def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return self._client.get_model_metadata(model, version, **self._kw(True))

    def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        return _unwrap(
            self.endpoint.protocol, self._client.get_model_config(model, version, **self._kw(True)), "config"
        )

    def statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        return self._client.get_inference_statistics(model, version, **self._kw(True, admin=True))

    def load_model(self, model: str) -> None:
        self._client.load_model(model, **self._kw(admin=True))

    def unload_model(self, model: str) -> None:
        self._client.unload_model(model, **self._kw(admin=True))

    def register_system_shm(self, region: str, key: str, byte_size: int) -> None:
        self._client.register_system_shared_memory(region, key, byte_size, **self._kw(admin=True))

    def unregister_system_shm(self, region: str) -> None:
        self._client.unregister_system_shared_memory(region, **self._kw(admin=True))

    def infer(
        self, model: str, payloads: list[TensorPayload], output_names: list[str], version: str = ""
    ) -> RawResult:
        inputs = _build_inputs(self._module, payloads)
        outputs = [self._module.InferRequestedOutput(name) for name in output_names]
        result = self._client.infer(model, inputs, model_version=version, outputs=outputs, **self._kw())
        return RawResult(
            outputs={name: result.as_numpy(name) for name in output_names},
            model_version=_served_version(self.endpoint.protocol, result),
        )

    def close(self) -> None:
        self._client.close()


class AsyncTransport:
    """The same calls over tritonclient's asyncio clients; safe for concurrent tasks in one loop."""

    def __init__(self, endpoint: Endpoint, timeout_s: float, connection_limit: int = 100) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._module = _aio_module(endpoint.protocol)
        self._grpc = endpoint.protocol == "grpc"
        self._auth = auth_headers()  # read once: per request it would re-read a token file
        if self._grpc:
            self._client = self._module.InferenceServerClient(endpoint.address, ssl=endpoint.ssl)
        else:
            self._client = self._module.InferenceServerClient(
                endpoint.address, ssl=endpoint.ssl, conn_limit=connection_limit, conn_timeout=timeout_s
            )

    def _kw(self, as_json: bool = False, admin: bool = False) -> dict[str, Any]:
        return _call_kwargs(self._grpc, self.timeout_s, self.endpoint.protocol, as_json, admin, self._auth)

    async def is_live(self) -> bool:
        return bool(await self._client.is_server_live(**self._kw()))

    async def is_ready(self) -> bool:
        return bool(await self._client.is_server_ready(**self._kw()))

    async def is_model_ready(self, model: str, version: str = "") -> bool:
        return bool(await self._client.is_model_ready(model, version, **self._kw()))

    async def repository_index(self) -> list[dict[str, Any]]:
        return _unwrap(
            self.endpoint.protocol,
            await self._client.get_model_repository_index(**self._kw(True, admin=True)),
            "models",
        )

    async def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return await self._client.get_model_metadata(model, version, **self._kw(True))

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        return _unwrap(
            self.endpoint.protocol,
            await self._client.get_model_config(model, version, **self._kw(True)),
            "config",
        )

    async def statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        return await self._client.get_inference_statistics(model, version, **self._kw(True, admin=True))

    async def load_model(self, model: str) -> None:
        await self._client.load_model(model, **self._kw(admin=True))

    async def unload_model(self, model: str) -> None:
        await self._client.unload_model(model, **self._kw(admin=True))

    async def register_system_shm(self, region: str, key: str, byte_size: int) -> None:
        await self._client.register_system_shared_memory(region, key, byte_size, **self._kw(admin=True))

    async def unregister_system_shm(self, region: str) -> None:
        await self._client.unregister_system_shared_memory(region, **self._kw(admin=True))

    async def infer(
        self, model: str, payloads: list[TensorPayload], output_names: list[str], version: str = ""
    ) -> RawResult:
        inputs = _build_inputs(self._module, payloads)
        outputs = [self._module.InferRequestedOutput(name) for name in output_names]
        result = await self._client.infer(model, inputs, model_version=version, outputs=outputs, **self._kw())
        return RawResult(
            outputs={name: result.as_numpy(name) for name in output_names},
            model_version=_served_version(self.endpoint.protocol, result),
        )

    async def close(self) -> None:
        await self._client.close()
