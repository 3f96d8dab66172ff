"""Property-based: random strings, bytes, shapes, dtypes and token ids thrown at the real local Triton
(ensemble and tensor model) and at the bundle client. Every request is answered, either with outputs of
the right shape or with an error that blames the request (400 / INVALID_ARGUMENT, never INTERNAL), and
the server stays ready with no Python-backend stub lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from triton_bundle.client import ClientError, ClientOptions, RetryPolicy, TritonClient
from triton_bundle.repository import contract
from triton_bundle.serving.local_triton import LocalTriton
from triton_bundle.spec import ModelSpec

pytestmark = pytest.mark.slow

CLIENT_ERROR = {"400", "StatusCode.INVALID_ARGUMENT"}
MAX_BATCH = 32
RANDOM = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

protocols = st.sampled_from(["http", "grpc"])
# Any text: control characters, NUL, emoji, right-to-left, very long words; and bytes that are not UTF-8.
items = st.one_of(st.text(max_size=400), st.binary(max_size=400))


def _client(protocol: str, server: LocalTriton):
    if protocol == "grpc":
        return grpcclient, grpcclient.InferenceServerClient(server.grpc_url)
    return httpclient, httpclient.InferenceServerClient(server.http_url, network_timeout=120)


def _send(protocol: str, server: LocalTriton, model: str, arrays: dict[str, tuple[np.ndarray, str]]):
    """Raw tensors with the given Triton datatypes; returns (result, None) or (None, server error)."""
    module, client = _client(protocol, server)
    inputs = []
    for name, (array, datatype) in arrays.items():
        tensor = module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        return client.infer(model, inputs), None
    except InferenceServerException as exc:
        return None, exc
    finally:
        client.close()


def _answered(result, error, outputs: dict[str, int]) -> None:
    """Either every output has the expected batch dim and finite values, or the request was blamed."""
    if error is not None:
        assert error.status() in CLIENT_ERROR, f"{error.status()}: {error}"
        assert str(error).strip(), "an error without a message"
        return
    for name, batch in outputs.items():
        array = result.as_numpy(name)
        assert array is not None and array.shape[0] == batch, (name, None if array is None else array.shape)
        if array.dtype.kind == "f":
            assert np.isfinite(array).all(), name


@pytest.fixture(scope="module")
def served(demo_spec: ModelSpec, demo_server: LocalTriton):
    log = Path(demo_server.config.log_file)
    offset = log.stat().st_size
    yield demo_spec, demo_server
    # After every example: still ready, and no Python-backend stub died and was restarted.
    _, client = _client("http", demo_server)
    assert client.is_server_ready()
    client.close()
    tail = log.read_text(encoding="utf-8", errors="replace")[offset:]
    assert "Stub process" not in tail and "is not healthy" not in tail, tail[-2000:]


@RANDOM
@given(protocol=protocols, values=st.lists(items, min_size=1, max_size=MAX_BATCH + 6))
def test_random_texts_and_bytes_through_the_ensemble(
    served, protocol: str, values: list[str | bytes]
) -> None:
    spec, server = served
    column = np.array([[v if isinstance(v, bytes) else v.encode("utf-8")] for v in values], dtype=np.object_)
    result, error = _send(protocol, server, spec.name, {contract.TEXT_INPUT: (column, "BYTES")})
    if len(values) > MAX_BATCH:
        assert error is not None and "batch-size must be" in str(error)
    else:
        assert error is None, error
    _answered(
        result, error, {contract.LABELS_OUTPUT: len(values), contract.PROBABILITIES_OUTPUT: len(values)}
    )
    if result is not None:
        np.testing.assert_allclose(result.as_numpy(contract.PROBABILITIES_OUTPUT).sum(axis=1), 1.0, atol=1e-4)


@RANDOM
@given(
    protocol=protocols,
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    datatype=st.sampled_from(["BYTES", "FP32", "INT64", "UINT8"]),
)
def test_random_shapes_and_dtypes_at_the_ensemble(
    served, protocol: str, shape: list[int], datatype: str
) -> None:
    spec, server = served
    if datatype == "BYTES":
        array = np.full(shape, b"where is my order", dtype=np.object_)
    else:
        array = np.ones(shape, dtype={"FP32": np.float32, "INT64": np.int64, "UINT8": np.uint8}[datatype])
    result, error = _send(protocol, server, spec.name, {contract.TEXT_INPUT: (array, datatype)})
    valid = datatype == "BYTES" and len(shape) == 2 and shape[1] == 1 and 1 <= shape[0] <= MAX_BATCH
    assert (error is None) == valid, (shape, datatype, error)
    _answered(result, error, {contract.LABELS_OUTPUT: shape[0]} if valid else {})


_TOKEN_TYPES = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32}


@st.composite
def token_requests(draw) -> dict[str, tuple[np.ndarray, str]]:
    """Mostly well-formed token tensors with one or more things wrong (or nothing wrong)."""
    batch = draw(st.integers(0, MAX_BATCH + 2))
    length = draw(st.integers(0, 160))
    names = draw(
        st.sets(
            st.sampled_from([contract.INPUT_IDS, contract.ATTENTION_MASK, contract.TOKEN_TYPE_IDS, "extra"])
        )
    )
    request = {}
    for name in sorted(names):
        datatype = draw(st.sampled_from(["INT64", "INT64", "INT64", "INT32", "FP32"]))
        own_length = draw(st.sampled_from([length, length, length, max(0, length - 3)]))
        low, high = (-40_000, 40_000) if name == contract.INPUT_IDS else (0, 1)
        values = draw(st.integers(low, high)) if draw(st.booleans()) else 1
        array = np.full((batch, own_length), values, dtype=_TOKEN_TYPES[datatype])
        request[name] = (array, datatype)
    return request


@RANDOM
@given(protocol=protocols, request=token_requests())
def test_random_token_tensors_at_the_tensor_model(
    served, protocol: str, request: dict[str, tuple[np.ndarray, str]]
) -> None:
    spec, server = served
    result, error = _send(protocol, server, contract.tensor_model(spec.name), request)
    batch = next(iter(request.values()))[0].shape[0] if request else 0
    _answered(result, error, {contract.LOGITS: batch} if error is None else {})


@RANDOM
@given(protocol=protocols, values=st.lists(st.text(max_size=300), max_size=2 * MAX_BATCH + 3))
def test_random_texts_through_the_bundle_client(served, protocol: str, values: list[str]) -> None:
    spec, server = served
    url = f"grpc://{server.grpc_url}" if protocol == "grpc" else f"http://{server.http_url}"
    with TritonClient(url, options=ClientOptions(retry=RetryPolicy.never())) as client:
        try:
            results = client.classify(spec.name, values)
        except ClientError as exc:
            assert not values and "no texts" in str(exc)
            return
    assert [r.text for r in results] == values
    assert all(
        len(r.labels) == spec.repository.top_k and r.scores == sorted(r.scores, reverse=True) for r in results
    )
