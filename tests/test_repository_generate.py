"""Generated repositories load in the real local Triton and answer like onnxruntime does on the same graph."""

from __future__ import annotations

import io
import json
import queue
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tokenizers import Tokenizer
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from triton_bundle.data import load_texts
from triton_bundle.manifest import Manifest, StageRecord
from triton_bundle.repository import contract
from triton_bundle.repository.generate import generate_repository
from triton_bundle.repository.layout import read_config
from triton_bundle.repository.sources import PrecisionGateError, RepositoryError
from triton_bundle.repository.validate import validate_repository
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import ModelSpec

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------ helpers


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _texts(spec: ModelSpec, n: int) -> list[str]:
    return load_texts(spec.resolve(spec.data.eval), spec.data.text_field, None).texts[:n]


def _expected_probabilities(workdir: Path, spec: ModelSpec, texts: list[str]) -> np.ndarray:
    """Reference: the exported ONNX in onnxruntime, fed by the checkpoint's tokenizer, one text at a time."""
    manifest = Manifest.load(workdir, spec.name)
    session = ort.InferenceSession(
        str(manifest.stages["export"].artifact("onnx")), providers=["CPUExecutionProvider"]
    )
    tokenizer = Tokenizer.from_file(str(manifest.stages["export"].artifact("checkpoint") / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(spec.shapes.sequence.max)
    names = {i.name for i in session.get_inputs()}
    rows = []
    for text in texts:
        enc = tokenizer.encode(text)
        feeds = {
            "input_ids": np.array([enc.ids], np.int64),
            "attention_mask": np.array([enc.attention_mask], np.int64),
            "token_type_ids": np.array([enc.type_ids], np.int64),
        }
        rows.append(session.run(None, {k: v for k, v in feeds.items() if k in names})[0][0])
    return _softmax(np.stack(rows))


def _labels(workdir: Path, spec: ModelSpec) -> list[str]:
    return Manifest.load(workdir, spec.name).stages["export"].details["labels"]


def _text_input(module, texts: list[str | bytes]):
    data = np.array([[t if isinstance(t, bytes) else t.encode()] for t in texts], dtype=np.object_)
    tensor = module.InferInput(contract.TEXT_INPUT, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def _stats(client: httpclient.InferenceServerClient, model: str) -> dict:
    stats = client.get_inference_statistics(model)["model_stats"]
    return max(stats, key=lambda s: int(s["version"] or 0))


# -------------------------------------------------------------------------------- the demo repository


def test_generated_configs_round_trip_and_validate(demo_spec: ModelSpec, demo_repository: Path) -> None:
    configs = sorted(demo_repository.glob("*/config.pbtxt"))
    assert {p.parent.name for p in configs} == {
        contract.ensemble_model("minilm-intent"),
        contract.tokenizer_model("minilm-intent"),
        contract.tensor_model("minilm-intent"),
        contract.postprocess_model("minilm-intent"),
    }
    for path in configs:
        config = read_config(path)
        assert text_format.MessageToString(config) == path.read_text(encoding="utf-8")
        assert config.name == path.parent.name
    assert [p for p in validate_repository(demo_repository) if p.severity == "error"] == []
    tensor = read_config(demo_repository / contract.tensor_model("minilm-intent") / "config.pbtxt")
    assert tensor.backend == "python" and all(i.allow_ragged_batch for i in tensor.input)
    assert tensor.HasField("dynamic_batching")  # on even with no queue delay (the batch forms while it runs)
    assert tensor.dynamic_batching.max_queue_delay_microseconds == demo_spec.repository.max_queue_delay_us
    assert len(tensor.model_warmup) == 2


def test_manifest_records_the_repository(
    demo_spec: ModelSpec, demo_workdir: Path, demo_repository: Path
) -> None:
    record = Manifest.load(demo_workdir, demo_spec.name).require("repository", "generate")
    assert record.artifact("repository") == demo_repository
    assert record.details["target"] == "local"
    assert record.details["models"]["ensemble"] == demo_spec.name


def test_existing_repository_needs_force(
    demo_spec: ModelSpec, demo_workdir: Path, demo_repository: Path
) -> None:
    with pytest.raises(FileExistsError, match="--force"):
        generate_repository(demo_spec, demo_workdir, out_dir=demo_repository)


def test_ensemble_classifies_raw_text_over_http_and_grpc(
    demo_spec: ModelSpec, demo_workdir: Path, demo_server: LocalTriton
) -> None:
    texts = _texts(demo_spec, 6)
    expected = _expected_probabilities(demo_workdir, demo_spec, texts)
    labels = _labels(demo_workdir, demo_spec)

    http = httpclient.InferenceServerClient(demo_server.http_url)
    result = http.infer(demo_spec.name, [_text_input(httpclient, texts)])
    probabilities = result.as_numpy(contract.PROBABILITIES_OUTPUT)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    top = result.as_numpy(contract.LABELS_OUTPUT)
    assert top.shape == (len(texts), min(demo_spec.repository.top_k, len(labels)))
    assert [row[0].decode() for row in top] == [labels[i] for i in expected.argmax(axis=1)]
    scores = result.as_numpy(contract.SCORES_OUTPUT)
    assert np.all(np.diff(scores, axis=1) <= 0), "labels come best first"

    grpc = grpcclient.InferenceServerClient(demo_server.grpc_url)
    gresult = grpc.infer(demo_spec.name, [_text_input(grpcclient, texts[:2])])
    np.testing.assert_allclose(gresult.as_numpy(contract.PROBABILITIES_OUTPUT), expected[:2], atol=1e-4)


def test_invalid_utf8_and_empty_text_are_answered(demo_spec: ModelSpec, demo_server: LocalTriton) -> None:
    http = httpclient.InferenceServerClient(demo_server.http_url)
    result = http.infer(demo_spec.name, [_text_input(httpclient, [b"\xff\xfe caf\xc3", b"", "ok " * 400])])
    probabilities = result.as_numpy(contract.PROBABILITIES_OUTPUT)
    assert probabilities.shape[0] == 3
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_tensor_model_serves_clients_that_tokenize_themselves(
    demo_spec: ModelSpec, demo_workdir: Path, demo_server: LocalTriton
) -> None:
    texts = _texts(demo_spec, 3)
    expected = _expected_probabilities(demo_workdir, demo_spec, texts)
    checkpoint = Manifest.load(demo_workdir, demo_spec.name).stages["export"].artifact("checkpoint")
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    feeds = {
        contract.INPUT_IDS: np.array([e.ids for e in encodings], np.int64),
        contract.ATTENTION_MASK: np.array([e.attention_mask for e in encodings], np.int64),
        contract.TOKEN_TYPE_IDS: np.array([e.type_ids for e in encodings], np.int64),
    }
    inputs = []
    for name, value in feeds.items():
        tensor = httpclient.InferInput(name, list(value.shape), "INT64")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    http = httpclient.InferenceServerClient(demo_server.http_url)
    model = contract.tensor_model(demo_spec.name)
    logits = http.infer(model, inputs).as_numpy(contract.LOGITS)
    np.testing.assert_allclose(_softmax(logits), expected, atol=1e-4)
    # Triton's classification extension reads the label file shipped with the tensor model.
    top = http.infer(model, inputs, outputs=[httpclient.InferRequestedOutput(contract.LOGITS, class_count=1)])
    labels = _labels(demo_workdir, demo_spec)
    assert [row[0].decode().split(":")[2] for row in top.as_numpy(contract.LOGITS)] == [
        labels[i] for i in expected.argmax(axis=1)
    ]


def test_64_concurrent_requests_form_server_side_batches(
    demo_spec: ModelSpec, demo_server: LocalTriton
) -> None:
    texts = _texts(demo_spec, 64)
    texts = (texts * (64 // len(texts) + 1))[:64]
    stats_client = httpclient.InferenceServerClient(demo_server.http_url)
    watched = [contract.tokenizer_model(demo_spec.name), contract.tensor_model(demo_spec.name)]
    before = {m: _stats(stats_client, m) for m in watched}
    # gRPC async calls leave the client at once (C-core threads), so all 64 are in flight together.
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    done: queue.Queue = queue.Queue()
    for text in texts:
        client.async_infer(
            demo_spec.name,
            [_text_input(grpcclient, [text])],
            callback=lambda result, error: done.put((result, error)),
        )
    answers = [done.get(timeout=300) for _ in texts]
    assert [error for _, error in answers if error is not None] == []
    assert all(result.as_numpy(contract.LABELS_OUTPUT).shape[0] == 1 for result, _ in answers)
    for model in watched:
        after = _stats(stats_client, model)
        inferences = int(after["inference_count"]) - int(before[model]["inference_count"])
        executions = int(after["execution_count"]) - int(before[model]["execution_count"])
        assert inferences == 64
        assert executions < inferences, f"{model}: {executions} executions for {inferences} requests"
        old = {
            b["batch_size"]: int(b["compute_infer"]["count"]) for b in before[model].get("batch_stats", [])
        }
        batched = {
            int(b["batch_size"])
            for b in after.get("batch_stats", [])
            if int(b["compute_infer"]["count"]) > old.get(b["batch_size"], 0)
        }
        assert max(batched) > 1, f"{model} saw only batch sizes {sorted(batched)}"
    client.close()


# ------------------------------------------------------------- versions, cache, embeddings, vision


def _quantized_workdir(demo_spec: ModelSpec, demo_workdir: Path, root: Path, passed: bool) -> Path:
    """A copy of the demo manifest plus a real dynamic-INT8 variant and its gate verdict."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    workdir = root / f"work-{'pass' if passed else 'fail'}"
    workdir.mkdir(parents=True)
    manifest = Manifest.load(demo_workdir, demo_spec.name)
    int8 = root / "int8-dynamic.onnx"
    if not int8.exists():
        quantize_dynamic(
            str(manifest.stages["export"].artifact("onnx")), str(int8), weight_type=QuantType.QInt8
        )
    manifest.stages.pop("repository", None)
    manifest.record(
        StageRecord(
            stage="precision",
            artifacts={"int8-dynamic": int8},
            details={
                "gates": {"int8-dynamic": {"passed": passed, "label_agreement": 1.0 if passed else 0.5}}
            },
            passed=passed,
        )
    )
    manifest.save(workdir)
    return workdir


def test_variant_whose_gate_failed_is_refused(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    workdir = _quantized_workdir(demo_spec, demo_workdir, tmp_path, passed=False)
    with pytest.raises(PrecisionGateError, match="failed its accuracy gate"):
        generate_repository(demo_spec, workdir, out_dir=tmp_path / "repo", variants=["int8-dynamic"])
    assert not (tmp_path / "repo").exists()


def _spec(base: ModelSpec, **fields) -> ModelSpec:
    data = {"data": {"eval": str(base.resolve(base.data.eval))}, "shapes": base.shapes.model_dump(), **fields}
    spec = ModelSpec.model_validate(data)
    spec.base_dir = base.base_dir
    return spec


def _embedding_workdir(base: ModelSpec, checkpoint: Path, root: Path) -> tuple[ModelSpec, Path]:
    """A small real embedding graph (token embeddings, masked mean) fed by the demo's tokenizer."""
    import torch

    class MeanEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embed = torch.nn.Embedding(30522, 16)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            return (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    onnx_path = root / "embed.onnx"
    example = (torch.ones(2, 7, dtype=torch.int64), torch.ones(2, 7, dtype=torch.int64))
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "embedding": {0: "batch"},
    }
    torch.onnx.export(
        MeanEmbedding().eval(),
        example,
        str(onnx_path),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    spec = _spec(base, name="tiny-embed", task="feature-extraction", source={"path": str(checkpoint)})
    workdir = root / "embed-work"
    Manifest(
        model=spec.name,
        stages={
            "export": StageRecord(stage="export", artifacts={"onnx": onnx_path, "checkpoint": checkpoint})
        },
    ).save(workdir)
    return spec, workdir


def _vision_workdir(base: ModelSpec, root: Path) -> tuple[ModelSpec, Path]:
    """A small real CNN classifier over 32x32 RGB, with an HF-style preprocessor config."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    onnx_path = root / "vision.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 32, 32),),
        str(onnx_path),
        input_names=["pixel_values"],
        output_names=["logits"],
        dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    checkpoint = root / "vision-ckpt"
    checkpoint.mkdir()
    (checkpoint / "preprocessor_config.json").write_text(
        json.dumps(
            {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "rescale_factor": 1 / 255}
        ),
        encoding="utf-8",
    )
    spec = _spec(
        base,
        name="tiny-vision",
        task="image-classification",
        labels=["cat", "dog", "bird"],
        source={"path": str(checkpoint)},
    )
    workdir = root / "vision-work"
    Manifest(
        model=spec.name, stages={"export": StageRecord(stage="export", artifacts={"onnx": onnx_path})}
    ).save(workdir)
    return spec, workdir


@pytest.fixture(scope="module")
def extra(demo_spec: ModelSpec, demo_workdir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One more real Triton: fp32 + int8-dynamic side by side with a response cache, an embedding
    ensemble and a vision ensemble (three repositories, one server)."""
    root = tmp_path_factory.mktemp("extra")
    workdir = _quantized_workdir(demo_spec, demo_workdir, root, passed=True)
    versions = generate_repository(
        demo_spec,
        workdir,
        out_dir=root / "versions",
        variants=["fp32", "int8-dynamic"],
        response_cache=True,
        warmup=False,
    )
    checkpoint = Manifest.load(demo_workdir, demo_spec.name).stages["export"].artifact("checkpoint")
    embed_spec, embed_work = _embedding_workdir(demo_spec, checkpoint, root)
    embed_repo = generate_repository(embed_spec, embed_work, out_dir=root / "embed", warmup=False)
    vision_spec, vision_work = _vision_workdir(demo_spec, root)
    vision_repo = generate_repository(vision_spec, vision_work, out_dir=root / "vision")
    config = ServerConfig(
        repository=versions,
        log_file=root / "triton.log",
        extra_args=[f"--model-repository={embed_repo}", f"--model-repository={vision_repo}"],
    )
    with LocalTriton(config) as server:
        yield {
            "server": server,
            "root": root,
            "embed": (embed_spec, embed_work),
            "vision": (vision_spec, vision_work),
            "workdir": workdir,
        }


def test_versions_side_by_side_and_response_cache(demo_spec: ModelSpec, demo_workdir: Path, extra) -> None:
    server: LocalTriton = extra["server"]
    http = httpclient.InferenceServerClient(server.http_url)
    tensor = contract.tensor_model(demo_spec.name)
    ready = {v: http.is_model_ready(tensor, model_version=v) for v in ("1", "2")}
    assert ready == {"1": True, "2": True}
    config = read_config(extra["root"] / "versions" / tensor / "config.pbtxt")
    assert config.version_policy.WhichOneof("policy_choice") == "all"

    texts = _texts(demo_spec, 8)
    expected = _expected_probabilities(demo_workdir, demo_spec, texts)
    result = http.infer(demo_spec.name, [_text_input(httpclient, texts)])  # ensemble -> latest (int8-dynamic)
    agreement = np.mean(result.as_numpy(contract.PROBABILITIES_OUTPUT).argmax(1) == expected.argmax(1))
    assert agreement >= 0.75

    before = _stats(http, demo_spec.name)
    for _ in range(3):
        http.infer(demo_spec.name, [_text_input(httpclient, texts[:1])])
    after = _stats(http, demo_spec.name)
    hits = int(after["inference_stats"]["cache_hit"]["count"]) - int(
        before["inference_stats"]["cache_hit"]["count"]
    )
    assert hits >= 2


def test_embedding_ensemble_returns_normalised_embeddings(extra) -> None:
    spec, workdir = extra["embed"]
    record = Manifest.load(workdir, spec.name).stages["export"]
    session = ort.InferenceSession(str(record.artifact("onnx")), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(record.artifact("checkpoint") / "tokenizer.json"))
    tokenizer.no_padding()
    texts = ["where is my parcel", "the app crashes when I open settings, every single time"]
    expected = []
    for text in texts:
        enc = tokenizer.encode(text)
        vec = session.run(
            None, {"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask])}
        )[0][0]
        expected.append(vec / np.linalg.norm(vec))
    http = httpclient.InferenceServerClient(extra["server"].http_url)
    embedding = http.infer(spec.name, [_text_input(httpclient, texts)]).as_numpy(contract.EMBEDDING_OUTPUT)
    np.testing.assert_allclose(embedding, np.stack(expected), atol=1e-5)
    tok_config = read_config(extra["root"] / "embed" / contract.tokenizer_model(spec.name) / "config.pbtxt")
    assert [o.name for o in tok_config.output] == ["input_ids", "attention_mask"]


def _png(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.new("RGB", size, rgb)
    image.putpixel((3, 3), (255 - rgb[0], 10, 200))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_vision_ensemble_classifies_encoded_images_and_isolates_bad_ones(extra) -> None:
    from PIL import Image

    spec, workdir = extra["vision"]
    session = ort.InferenceSession(
        str(Manifest.load(workdir, spec.name).stages["export"].artifact("onnx")),
        providers=["CPUExecutionProvider"],
    )
    images = [_png((200, 30, 30)), _png((20, 180, 90), size=(64, 64))]
    pixels = []
    for blob in images:
        array = np.asarray(
            Image.open(io.BytesIO(blob)).convert("RGB").resize((32, 32), Image.BILINEAR), np.float32
        )
        pixels.append(((array / 255 - 0.5) / 0.25).transpose(2, 0, 1))
    expected = _softmax(session.run(None, {"pixel_values": np.stack(pixels).astype(np.float32)})[0])

    client = httpclient.InferenceServerClient(extra["server"].http_url, concurrency=4)

    def request(blobs: list[bytes]):
        data = np.array([[b] for b in blobs], dtype=np.object_)
        tensor = httpclient.InferInput(contract.IMAGE_INPUT, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        return client.async_infer(spec.name, [tensor])

    good, bad = request(images), request([b"not an image"])
    result = good.get_result(timeout=60)
    np.testing.assert_allclose(result.as_numpy(contract.PROBABILITIES_OUTPUT), expected, atol=1e-5)
    assert [row[0].decode() for row in result.as_numpy(contract.LABELS_OUTPUT)] == [
        spec.labels[i] for i in expected.argmax(1)
    ]
    with pytest.raises(InferenceServerException, match="could not decode"):
        bad.get_result(timeout=60)
    client.close()


# ------------------------------------------------------------------------------------ other targets


@pytest.mark.parametrize("target", ["cpu-container", "nvidia"])
def test_container_targets_use_the_native_onnxruntime_backend(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path, target: str
) -> None:
    workdir = tmp_path / "work"  # saved elsewhere, the manifest names the demo's artifacts by absolute path
    Manifest.load(demo_workdir, demo_spec.name).save(workdir)
    repo = generate_repository(demo_spec, workdir, out_dir=tmp_path / "repo", target=target)
    tensor = read_config(repo / contract.tensor_model(demo_spec.name) / "config.pbtxt")
    assert tensor.platform == "onnxruntime_onnx" and not tensor.backend
    kind = mc.ModelInstanceGroup.KIND_GPU if target == "nvidia" else mc.ModelInstanceGroup.KIND_CPU
    assert [g.kind for g in tensor.instance_group] == [kind]
    assert not any(i.allow_ragged_batch for i in tensor.input)
    tokenizer = read_config(repo / contract.tokenizer_model(demo_spec.name) / "config.pbtxt")
    assert tokenizer.parameters["padding"].string_value == "bucket"
    assert (repo / "python_backend_requirements.txt").read_text().count("tokenizers") == 1
    assert [p for p in validate_repository(repo) if p.severity == "error"] == []
    for path in repo.glob("*/config.pbtxt"):
        assert text_format.MessageToString(read_config(path)) == path.read_text(encoding="utf-8")


def test_max_batch_size_zero_is_refused_with_a_reason(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    with pytest.raises(RepositoryError, match="max_batch_size"):
        generate_repository(demo_spec, demo_workdir, out_dir=tmp_path / "repo", max_batch_size=0)
