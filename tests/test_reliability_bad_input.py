"""Bad input against the real local Triton: each case gets a clear error (or a defined answer), the server
keeps serving, and the next valid request succeeds. Through the ensemble (raw text in) and the tensor model
(token ids in), over HTTP and gRPC, bypassing the bundle client's own checks so the server is what is tested.

Decided behaviour (README, "Reliability"):
- an empty string is a valid text: it encodes to [CLS] [SEP] and gets an answer;
- text past shapes.sequence.max is truncated by the tokenizer (a 10 MB text too, cut before tokenizing);
- invalid UTF-8 is decoded with U+FFFD replacement, never failing its neighbours in a dynamic batch;
- the tensor model refuses sequences that are empty, longer than shapes.sequence.max or of different
  lengths across inputs, and NaN / Inf in float inputs, each with INVALID_ARGUMENT (HTTP 400).
"""

from __future__ import annotations

import io
import queue
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from triton_bundle.client import (
    ClientOptions,
    InvalidInputError,
    RetryPolicy,
    ServerRejectedError,
    TritonClient,
)
from triton_bundle.manifest import Manifest, StageRecord
from triton_bundle.repository import contract
from triton_bundle.repository.generate import generate_repository
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import ModelSpec

pytestmark = pytest.mark.slow

PROTOCOLS = ("http", "grpc")
CLIENT_ERROR = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
MAX_BATCH = 32  # examples/minilm-intent/spec.yaml repository.max_batch_size
MAX_SEQUENCE = 128  # its shapes.sequence.max
TEN_MB = 10 * 1024 * 1024


# ------------------------------------------------------------------------------------------------ helpers


def _module(protocol: str):
    return grpcclient if protocol == "grpc" else httpclient


def _client(protocol: str, server: LocalTriton):
    if protocol == "grpc":
        return grpcclient.InferenceServerClient(server.grpc_url)
    return httpclient.InferenceServerClient(server.http_url, network_timeout=120, connection_timeout=120)


def _triton_type(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return "BYTES" if array.dtype == np.object_ else np_to_triton_dtype(array.dtype)


def infer(protocol: str, server: LocalTriton, model: str, arrays: dict[str, np.ndarray]):
    """Send raw tensors exactly as given (names, dtypes, shapes): no client-side checks."""
    module = _module(protocol)
    inputs = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), _triton_type(array))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client = _client(protocol, server)
    try:
        return client.infer(model, inputs)
    finally:
        client.close()


def texts(*values: str | bytes) -> dict[str, np.ndarray]:
    column = [[v if isinstance(v, bytes) else v.encode("utf-8")] for v in values]
    return {contract.TEXT_INPUT: np.array(column, dtype=np.object_).reshape(len(values), 1)}


def tokens(batch: int = 1, length: int = 8, **replace: np.ndarray | None) -> dict[str, np.ndarray]:
    """Token-id tensors shaped like the tokenizer's output: [CLS] words... [SEP]."""
    ids = np.full((batch, length), 2054, np.int64)  # "what"
    if length:
        ids[:, 0], ids[:, -1] = 101, 102
    arrays = {
        contract.INPUT_IDS: ids,
        contract.ATTENTION_MASK: np.ones((batch, length), np.int64),
        contract.TOKEN_TYPE_IDS: np.zeros((batch, length), np.int64),
    }
    arrays.update(replace)
    return {name: array for name, array in arrays.items() if array is not None}


def probabilities(result) -> np.ndarray:
    return result.as_numpy(contract.PROBABILITIES_OUTPUT)


def assert_serving(protocol: str, server: LocalTriton, spec: ModelSpec) -> None:
    """The server is ready and answers a valid request through both the ensemble and the tensor model."""
    client = _client(protocol, server)
    try:
        assert client.is_server_ready()
    finally:
        client.close()
    answer = probabilities(infer(protocol, server, spec.name, texts("where is my order?")))
    np.testing.assert_allclose(answer.sum(axis=1), 1.0, atol=1e-5)
    logits = infer(protocol, server, contract.tensor_model(spec.name), tokens()).as_numpy(contract.LOGITS)
    assert logits.shape[0] == 1 and np.isfinite(logits).all()


# -------------------------------------------------------------------------------------- rejected cases


@dataclass(frozen=True)
class Rejected:
    """A request the server must refuse, as the client's fault (400 / INVALID_ARGUMENT), saying `match`."""

    name: str
    role: str  # "ensemble" or "tensor"
    arrays: Callable[[], dict[str, np.ndarray]]
    match: str


REJECTED = [
    Rejected("empty batch", "ensemble", lambda: texts(), r"TEXT.*got 0"),
    Rejected(
        "batch over max_batch_size",
        "ensemble",
        lambda: texts(*["hi"] * (MAX_BATCH + 1)),
        rf"batch-size must be <= {MAX_BATCH}",
    ),
    Rejected(
        "wrong dtype",
        "ensemble",
        lambda: {contract.TEXT_INPUT: np.ones((1, 1), np.float32)},
        r"data-type is 'FP32'.*expects 'BYTES'",
    ),
    Rejected(
        "wrong shape",
        "ensemble",
        lambda: {contract.TEXT_INPUT: np.array([[b"a", b"b"]], dtype=np.object_)},
        r"unexpected shape for input 'TEXT'",
    ),
    Rejected("missing input", "ensemble", lambda: {}, r"missing required input.*TEXT"),
    Rejected(
        "unknown extra input",
        "ensemble",
        lambda: {**texts("hi"), "EXTRA": np.ones((1, 1), np.float32)},
        r"expected 1 inputs but got 2",
    ),
    Rejected("empty batch", "tensor", lambda: tokens(batch=0), r"input byte size mismatch"),
    Rejected(
        "batch over max_batch_size",
        "tensor",
        lambda: tokens(batch=MAX_BATCH + 1),
        rf"batch-size must be <= {MAX_BATCH}",
    ),
    Rejected("empty sequence", "tensor", lambda: tokens(length=0), r"empty sequence"),
    Rejected(
        "sequence far past the profile maximum",
        "tensor",
        lambda: tokens(length=4 * MAX_SEQUENCE),
        rf"sequence of {4 * MAX_SEQUENCE} tokens exceeds this model's maximum of {MAX_SEQUENCE}",
    ),
    Rejected(
        "sequence lengths that disagree",
        "tensor",
        lambda: tokens(length=8, attention_mask=np.ones((1, 5), np.int64)),
        r"disagree on the sequence length",
    ),
    Rejected(
        "wrong dtype",
        "tensor",
        lambda: tokens(input_ids=np.ones((1, 8), np.float32)),
        r"data-type is 'FP32'.*expects 'INT64'",
    ),
    Rejected(
        "wrong shape",
        "tensor",
        lambda: tokens(input_ids=np.ones((1, 8, 2), np.int64)),
        r"unexpected shape for input 'input_ids'",
    ),
    Rejected(
        "missing input",
        "tensor",
        lambda: tokens(attention_mask=None),
        r"missing required input.*attention_mask",
    ),
    Rejected(
        "unknown extra input",
        "tensor",
        lambda: {**tokens(), "extra": np.ones((1, 8), np.int64)},
        r"expected 3 inputs but got 4",
    ),
    Rejected(
        "token ids outside the vocabulary",
        "tensor",
        lambda: tokens(input_ids=np.full((1, 8), 10**9, np.int64)),
        r"onnxruntime failed on this request.*out of data bounds",
    ),
]


def _model(spec: ModelSpec, role: str) -> str:
    return spec.name if role == "ensemble" else contract.tensor_model(spec.name)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", REJECTED, ids=lambda c: f"{c.role}-{c.name.replace(' ', '-')}")
def test_bad_request_gets_a_clear_error_and_the_server_keeps_serving(
    case: Rejected, protocol: str, demo_spec: ModelSpec, demo_server: LocalTriton
) -> None:
    with pytest.raises(InferenceServerException, match=case.match) as info:
        infer(protocol, demo_server, _model(demo_spec, case.role), case.arrays())
    assert info.value.status() == CLIENT_ERROR[protocol], info.value
    assert_serving(protocol, demo_server, demo_spec)


# -------------------------------------------------------------------------------------- answered cases


def _solo(protocol: str, server: LocalTriton, spec: ModelSpec, text: str | bytes) -> np.ndarray:
    return probabilities(infer(protocol, server, spec.name, texts(text)))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_string_is_answered_as_cls_sep(
    protocol: str, demo_spec: ModelSpec, demo_server: LocalTriton
) -> None:
    result = infer(protocol, demo_server, demo_spec.name, texts(""))
    assert result.as_numpy(contract.LABELS_OUTPUT).shape == (1, demo_spec.repository.top_k)
    np.testing.assert_allclose(probabilities(result).sum(axis=1), 1.0, atol=1e-5)
    # The tensor model gives the same answer for [CLS] [SEP]: the empty text really is that.
    logits = infer(protocol, demo_server, contract.tensor_model(demo_spec.name), tokens(length=2)).as_numpy(
        contract.LOGITS
    )
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(probabilities(result), expected, atol=1e-5)
    assert_serving(protocol, demo_server, demo_spec)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("tail_bytes", [20_000, TEN_MB], ids=["far-past-max", "10MB-body"])
def test_text_past_the_maximum_is_truncated_like_the_spec_says(
    tail_bytes: int, protocol: str, demo_spec: ModelSpec, demo_server: LocalTriton
) -> None:
    # More than MAX_SEQUENCE tokens before the tail: whatever follows cannot change the answer.
    head = "where is my order, it was due last week " * 40
    tail = " the refund never arrived" * (tail_bytes // 25)
    long = probabilities(infer(protocol, demo_server, demo_spec.name, texts(head + tail)))
    np.testing.assert_allclose(long, _solo(protocol, demo_server, demo_spec, head), atol=1e-5)
    assert_serving(protocol, demo_server, demo_spec)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_utf8_is_decoded_with_replacement(
    protocol: str, demo_spec: ModelSpec, demo_server: LocalTriton
) -> None:
    raw = b"\xff\xfe caf\xc3 my parcel \xed\xa0\x80 is late"
    answer = _solo(protocol, demo_server, demo_spec, raw)
    replaced = raw.decode("utf-8", errors="replace")
    np.testing.assert_allclose(answer, _solo(protocol, demo_server, demo_spec, replaced), atol=1e-5)
    assert_serving(protocol, demo_server, demo_spec)


def test_invalid_utf8_never_fails_its_neighbours_in_a_dynamic_batch(
    demo_spec: ModelSpec, demo_server: LocalTriton
) -> None:
    valid = ["where is my order?", "the app crashes on start", "cancel my subscription"]
    expected = {t: _solo("grpc", demo_server, demo_spec, t) for t in valid}
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    done: queue.Queue = queue.Queue()
    sent = []
    for i in range(48):  # all in flight at once: the dynamic batcher mixes them
        text: str | bytes = valid[i % 3] if i % 2 else b"\xc3\x28 broken \xa0\xa1" * (i + 1)
        sent.append(text)
        module_input = grpcclient.InferInput(contract.TEXT_INPUT, [1, 1], "BYTES")
        module_input.set_data_from_numpy(texts(text)[contract.TEXT_INPUT])
        client.async_infer(
            demo_spec.name,
            [module_input],
            callback=lambda result, error, i=i: done.put((i, result, error)),
        )
    answers = dict((i, (result, error)) for i, result, error in (done.get(timeout=300) for _ in sent))
    client.close()
    assert [i for i, (_, error) in answers.items() if error is not None] == []
    for i, text in enumerate(sent):
        if isinstance(text, str):
            np.testing.assert_allclose(probabilities(answers[i][0]), expected[text], atol=1e-5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bundle_client_names_the_problem_before_and_after_the_server(
    protocol: str, demo_spec: ModelSpec, demo_server: LocalTriton
) -> None:
    url = f"{protocol}://{demo_server.grpc_url if protocol == 'grpc' else demo_server.http_url}"
    checked = ClientOptions(retry=RetryPolicy.never())
    with TritonClient(url, options=checked) as client:
        with pytest.raises(InvalidInputError, match="empty batch"):
            client.infer(demo_spec.name, {contract.TEXT_INPUT: np.zeros((0, 1), dtype=np.object_)})
        with pytest.raises(InvalidInputError, match=r"expects BYTES, got FP32"):
            client.infer(demo_spec.name, {contract.TEXT_INPUT: np.ones((1, 1), np.float32)})
        with pytest.raises(InvalidInputError, match="unknown input"):
            client.infer(demo_spec.name, {**texts("hi"), "EXTRA": np.ones((1, 1), np.float32)})
        # Over max_batch_size is not an error for the bundle client: it splits the batch.
        many = client.classify(demo_spec.name, ["where is my order?"] * (MAX_BATCH + 5))
        assert len(many) == MAX_BATCH + 5 and len({r.labels[0] for r in many}) == 1
    unchecked = ClientOptions(retry=RetryPolicy.never(), validate_inputs=False)
    with TritonClient(url, options=unchecked) as client:
        with pytest.raises(ServerRejectedError, match="exceeds this model's maximum of 128"):
            client.infer(contract.tensor_model(demo_spec.name), tokens(length=300))
        assert client.classify(demo_spec.name, ["where is my order?"])[0].labels


# ------------------------------------------------------------------------ vision: corrupt images, NaN / Inf


def _tiny_vision_onnx(path: Path) -> Path:
    """A real (if tiny) image classifier: per-channel mean of pixel_values, then a 3x3 linear layer."""
    weights = helper.make_tensor(
        "W", TensorProto.FLOAT, [3, 3], [1.0, -1.0, 0.5, 0.2, 1.0, -0.3, -0.7, 0.1, 1.0]
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixel_values", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        ],
        "tiny_vision",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weights, helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def vision(demo_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reliability-vision")
    spec = ModelSpec.model_validate(
        {
            "name": "tiny-vision",
            "task": "image-classification",
            "labels": ["cat", "dog", "bird"],
            "source": {"path": str(root)},
            "data": {"eval": str(demo_spec.resolve(demo_spec.data.eval))},
        }
    )
    workdir = root / "work"
    onnx_path = _tiny_vision_onnx(root / "vision.onnx")
    Manifest(
        model=spec.name, stages={"export": StageRecord(stage="export", artifacts={"onnx": onnx_path})}
    ).save(workdir)
    repository = generate_repository(spec, workdir, out_dir=root / "repository")
    with LocalTriton(ServerConfig(repository=repository, log_file=root / "triton.log")) as server:
        yield spec, server


def _png(size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _images(*blobs: bytes) -> dict[str, np.ndarray]:
    return {contract.IMAGE_INPUT: np.array([[b] for b in blobs], dtype=np.object_)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "blob", [b"not an image", b"", _png()[:60]], ids=["garbage", "empty", "truncated-png"]
)
def test_corrupt_image_gets_a_clear_error_and_the_server_keeps_serving(
    vision, protocol: str, blob: bytes
) -> None:
    spec, server = vision
    with pytest.raises(InferenceServerException, match="could not decode an image") as info:
        infer(protocol, server, spec.name, _images(blob))
    assert info.value.status() == CLIENT_ERROR[protocol]
    labels = infer(protocol, server, spec.name, _images(_png())).as_numpy(contract.LABELS_OUTPUT)
    assert labels.shape[0] == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_float_input_is_refused_by_the_tensor_model(vision, protocol: str, bad: float) -> None:
    spec, server = vision
    model = contract.tensor_model(spec.name)
    pixels = np.zeros((2, 3, 32, 32), np.float32)
    pixels[1, 2, 5, 7] = bad
    with pytest.raises(InferenceServerException, match=r"'pixel_values' holds 1 NaN / Inf value") as info:
        infer(protocol, server, model, {"pixel_values": pixels})
    assert info.value.status() == CLIENT_ERROR[protocol]
    logits = infer(protocol, server, model, {"pixel_values": np.ones((2, 3, 32, 32), np.float32)})
    assert np.isfinite(logits.as_numpy("logits")).all()
