"""No payloads in logs, reports or error messages: a marker text sent during a run must not be found in
the server log, the load-test report files or the errors, beyond a short hash and length.

Two families: the demo's real text-classification ensemble (tokenizer -> ONNX model -> postprocess),
driven by the bundle's client over HTTP and gRPC with good and malformed requests; and a load test
against a model that echoes its input in its error messages (a careless model), whose failures must
reach the report as `<payload sha256:... N bytes>` instead of the text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from triton_bundle.client import TritonClient
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, loadtest_stage
from triton_bundle.redact import fingerprint, redact
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import SLOSpec, load_spec

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
MARKER = "zq-marker-5e1b confidential customer sentence"

LEAKY_CONFIG = """
name: "leaky"
backend: "python"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 1000 }
input [{ name: "TEXT", data_type: TYPE_STRING, dims: [1] }]
output [
  { name: "LABELS", data_type: TYPE_STRING, dims: [1] },
  { name: "SCORES", data_type: TYPE_FP32, dims: [1] },
  { name: "PROBABILITIES", data_type: TYPE_FP32, dims: [1] }
]
"""
LEAKY_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            text = texts[0].decode("utf-8", "replace")
            if "marker" in text:  # a careless model: it quotes the input in its error
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"cannot classify {text!r}")))
                continue
            n = len(texts)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("LABELS", np.array([[b"ok"]] * n, dtype=object)),
                pb_utils.Tensor("SCORES", np.ones((n, 1), dtype=np.float32)),
                pb_utils.Tensor("PROBABILITIES", np.ones((n, 1), dtype=np.float32)),
            ]))
        return responses
"""


def _files_containing(root: Path, text: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and text.encode() in path.read_bytes():
            found.append(str(path))
    return found


def test_redact_keeps_a_hash_and_length_only() -> None:
    message = f"model said: cannot classify '{MARKER}' (and 'ok')"
    cleaned = redact(message, [MARKER, "ok", MARKER.encode()])
    assert MARKER not in cleaned and fingerprint(MARKER) in cleaned
    assert "'ok'" in cleaned  # too short to be a payload worth hiding; ordinary words stay
    assert fingerprint(MARKER).startswith(
        "<payload sha256:"
    ) and f"{len(MARKER.encode())} bytes" in fingerprint(MARKER)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_demo_ensemble_logs_no_request_text(demo_server, demo_spec, protocol: str) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    address = demo_server.http_url if protocol == "http" else demo_server.grpc_url
    with TritonClient(f"{protocol}://{address}") as client:
        (result,) = client.classify(demo_spec.name, [MARKER])
        assert result.labels
    # Malformed requests that carry the marker: Triton's errors name the input, never its contents.
    module = httpclient if protocol == "http" else grpcclient
    raw = module.InferenceServerClient(address)
    errors = []
    for name, shape in (("TEXT", [1, 2]), ("NOT_AN_INPUT", [1, 1])):
        tensor = module.InferInput(name, shape, "BYTES")
        tensor.set_data_from_numpy(np.array([[MARKER.encode()] * shape[1]], dtype=object))
        with pytest.raises(Exception) as failed:
            raw.infer(demo_spec.name, [tensor])
        errors.append(str(failed.value))
    raw.close()
    assert all(MARKER not in e for e in errors), errors
    log = demo_server.config.log_file.read_text(errors="replace")
    assert "minilm" in log.lower() or demo_spec.name in log  # the log is the server's, and it is written
    assert MARKER not in log


@pytest.fixture(scope="module")
def leaky_server(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("leaky_repo")
    for name in ("fake-intent", "fake-intent_model"):
        shutil.copytree(FIXTURES / "loadtest_models" / name, repo / name)
        (repo / name / "1").mkdir()
    shutil.copy(FIXTURES / "loadtest_models" / "model.py", repo / "fake-intent_model" / "1" / "model.py")
    (repo / "leaky" / "1").mkdir(parents=True)
    (repo / "leaky" / "config.pbtxt").write_text(LEAKY_CONFIG)
    (repo / "leaky" / "1" / "model.py").write_text(LEAKY_MODEL)
    with LocalTriton(ServerConfig(repository=repo, log_file=repo.parent / "triton.log")) as server:
        yield server


@pytest.mark.parametrize("model", ["fake-intent", "leaky"])
def test_load_test_reports_carry_no_request_text(
    leaky_server: LocalTriton, model: str, tmp_path: Path
) -> None:
    spec_dir = tmp_path / "spec"
    shutil.copytree(FIXTURES / "loadtest_spec", spec_dir)
    rows = [
        {"text": MARKER, "label": "other"},
        {"text": f"{MARKER} two", "label": "other"},
        {"text": "hello", "label": "greeting"},
    ]
    (spec_dir / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = load_spec(spec_dir / "spec.yaml")
    endpoint = Endpoint(
        protocol="http",
        url=leaky_server.http_url,
        metrics_url=leaky_server.metrics_url,
        http_url=leaky_server.http_url,
    )
    result = loadtest_stage(
        spec,
        tmp_path / "work",
        Overrides(model=model, users=2, duration_s=4, max_requests=60),
        endpoint=endpoint,
        slo=SLOSpec(max_error_rate=1.0),
    )
    assert result.client.requests > 0
    if model == "leaky":
        assert result.client.failures > 0  # the marker's requests failed and were recorded...
        reports = " ".join(
            p.read_text(errors="replace") for p in (tmp_path / "work").rglob("*") if p.is_file()
        )
        assert "<payload sha256:" in reports  # ...by hash and length
    assert _files_containing(tmp_path / "work", "zq-marker-5e1b") == []
    assert (
        "zq-marker-5e1b" not in leaky_server.config.log_file.read_text(errors="replace") or model == "leaky"
    )
