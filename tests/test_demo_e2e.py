"""Issue 2's end-to-end path: a generated repository served by the real local Triton, raw text in
through the ensemble over HTTP and gRPC, labels that agree with PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from triton_bundle.data import load_texts
from triton_bundle.manifest import Manifest
from triton_bundle.pipeline.demo import pytorch_labels
from triton_bundle.repository import contract

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def heldout_reference(demo_spec, demo_workdir):
    data = load_texts(
        demo_spec.resolve(demo_spec.data.eval), demo_spec.data.text_field, demo_spec.data.label_field
    )
    checkpoint = Manifest.load(demo_workdir, demo_spec.name).require("export", "").artifact("checkpoint")
    return data.texts, pytorch_labels(checkpoint, data.texts, demo_spec.shapes.sequence.max)


def _infer(module, client, model: str, texts: list[str]) -> list[str]:
    labels: list[str] = []
    for start in range(0, len(texts), 16):
        batch = np.array([[t.encode()] for t in texts[start : start + 16]], dtype=np.object_)
        text = module.InferInput(contract.TEXT_INPUT, list(batch.shape), "BYTES")
        text.set_data_from_numpy(batch)
        wanted = [module.InferRequestedOutput(contract.LABELS_OUTPUT)]
        result = client.infer(model, [text], outputs=wanted)
        labels += [row[0].decode() for row in result.as_numpy(contract.LABELS_OUTPUT)]
    return labels


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_labels_agree_with_pytorch(protocol, demo_spec, demo_server, heldout_reference) -> None:
    texts, reference = heldout_reference
    if protocol == "http":
        client, module = httpclient.InferenceServerClient(demo_server.http_url), httpclient
    else:
        client, module = grpcclient.InferenceServerClient(demo_server.grpc_url), grpcclient
    served = _infer(module, client, contract.ensemble_model(demo_spec.name), texts)
    agreement = np.mean([a == b for a, b in zip(served, reference, strict=True)])
    assert len(served) == len(texts) >= 100
    assert agreement >= 0.99, f"{protocol}: served labels agree with PyTorch on only {agreement:.2%}"
    assert set(served) <= set(demo_spec.labels or reference), "labels come back as the model's class names"
