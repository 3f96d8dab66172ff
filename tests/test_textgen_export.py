"""text-generation export: one KV-cache graph for prefill and decode, parity at several shapes and in
greedy generation, for GPT-2 and Llama (tiny checkpoints from a config, trained briefly on the corpus)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from triton_bundle.export.decoder import DecoderWithPast, position_ids_for
from triton_bundle.export.decoder_parity import run_torch
from triton_bundle.export.decoder_stage import load_decoder
from triton_bundle.generation.ort_decoder import OrtDecoder, left_pad
from triton_bundle.generation.prompts import heldout
from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow


def test_graph_has_the_kv_cache_contract(textgen_workdir):
    spec, workdir = textgen_workdir
    record = Manifest.load(workdir, spec.name).stages["export"]
    graph = onnx.load(str(record.artifact("onnx")))
    inputs = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input
    }
    outputs = [o.name for o in graph.graph.output]
    layers = record.details["decoder"]["layers"]
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert (
        inputs["past_key_values.0.key"][0] == "batch"
        and inputs["past_key_values.0.key"][2] == "past_sequence"
    )
    assert inputs["attention_mask"] == ["batch", "total_sequence"]
    assert outputs == ["logits"] + [f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")]


def test_report_proves_shapes_and_generation(textgen_workdir):
    spec, workdir = textgen_workdir
    report = json.loads((workdir / "onnx" / "verification.json").read_text())
    assert report["passed"] and report["generation_match"] == 1.0
    shapes = {row["case"].rsplit("[", 1)[1] for row in report["outputs"]}
    assert any(s.endswith("p0]") and " n1 " in s for s in shapes)  # one token, no past
    assert any(" n1 " in s and not s.endswith("p0]") for s in shapes)  # decode step on a cache
    assert all(row["max_abs"] <= spec.export.tolerances.max_abs for row in report["outputs"])


@pytest.mark.parametrize("batch,new,past", [(1, 1, 0), (3, 1, 9), (2, 5, 4), (4, 7, 0), (1, 2, 17)])
def test_logits_match_at_shapes_not_traced(textgen_workdir, batch, new, past):
    """Real held-out tokens at (batch, new, past) shapes the exporter never saw; the trap fails these."""
    spec, workdir = textgen_workdir
    manifest = Manifest.load(workdir, spec.name)
    model, tokenizer = load_decoder(manifest.stages["export"].artifact("checkpoint"))
    wrapper = DecoderWithPast(model).eval()
    decoder = OrtDecoder(manifest.stages["export"].artifact("onnx"))
    texts = heldout(spec).texts
    rows = [tokenizer(texts[i % len(texts)])["input_ids"] * 3 for i in range(batch)]
    # Ragged pasts: row i has i fewer real past tokens (left padding) when there is a past at all.
    ids, mask = left_pad(
        [r[: max(past - i, 1) if past else 0] for i, r in enumerate(rows)], tokenizer.pad_token_id
    )
    if past == 0:
        ids, mask = ids[:, :0], mask[:, :0]
    feeds_past = run_torch(wrapper, _feeds(wrapper, ids, mask))[1:] if past else None
    new_ids = np.array([r[past : past + new] for r in rows], np.int64)
    full = np.concatenate([mask, np.ones((batch, new), np.int64)], axis=1)
    feeds = _feeds(wrapper, new_ids, full, feeds_past)
    expected = run_torch(wrapper, feeds)
    got = decoder.session.run(None, feeds)
    assert got[0].shape == (batch, new, model.config.vocab_size)
    assert got[1].shape[2] == full.shape[1]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=spec.export.tolerances.max_abs)


def _feeds(wrapper, ids, mask, past=None):
    names = wrapper.shape.past_names
    past = past or list(wrapper.shape.empty_past(ids.shape[0]).values())
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": position_ids_for(mask, ids.shape[1]),
    } | dict(zip(names, past, strict=True))


def test_onnx_greedy_equals_generate_on_heldout_prompts(textgen_workdir):
    spec, workdir = textgen_workdir
    manifest = Manifest.load(workdir, spec.name)
    model, tokenizer = load_decoder(manifest.stages["export"].artifact("checkpoint"))
    decoder = OrtDecoder(manifest.stages["export"].artifact("onnx"))
    prompts = [tokenizer(p)["input_ids"] for p in heldout(spec).prompts[-6:]]
    got = decoder.greedy(prompts, 20, tokenizer.pad_token_id, tokenizer.eos_token_id)
    for prompt, tokens in zip(prompts, got, strict=True):
        ids = torch.tensor([prompt])
        ref = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=20,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        assert tokens == ref[0, len(prompt) :].tolist()
