"""The export stage for text-generation: causal LM -> one KV-cache ONNX graph -> parity -> report.

Like the other tasks, the ONNX lands at `<workdir>/onnx/model.onnx` only when parity holds (shape cases
and greedy generation); a failed export leaves its report under `<workdir>/onnx-rejected/`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.export.decoder import DecoderWithPast
from triton_bundle.export.decoder_parity import build_cases, compare_cases, greedy_matches
from triton_bundle.export.loaders import load_hf_model
from triton_bundle.export.onnx_export import export_module, graph_dims
from triton_bundle.export.record import (
    DecoderShape,
    ExportDetails,
    ExportRecord,
    export_artifacts,
    parity_metrics,
)
from triton_bundle.export.report import JSON_NAME, ParityReport, tolerance_failures
from triton_bundle.export.stage import (
    ONNX_DIR,
    ONNX_FILE,
    REJECTED_DIR,
    ExportResult,
    checkpoint_path,
    publish_or_reject,
)
from triton_bundle.export.tasks import get_task
from triton_bundle.generation.ort_decoder import OrtDecoder
from triton_bundle.generation.prompts import heldout
from triton_bundle.manifest import Manifest
from triton_bundle.spec import ModelSpec

PARITY_PROMPTS = 8  # held-out prompts generated token for token (each runs PyTorch generate())


def load_decoder(checkpoint: Path, allow_pickle: bool = False):
    """(model in eval mode, tokenizer with a pad id) from a local causal-LM checkpoint."""
    from transformers import AutoTokenizer

    model, _ = load_hf_model(checkpoint, get_task("text-generation"), allow_pickle)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _verify(spec, model, tokenizer, wrapper, onnx_path: Path, exporter: str) -> ParityReport:
    data = heldout(spec)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    tokens = [tokenizer(t)["input_ids"] for t in data.texts]
    prompt_len = max(1, min(len(tokenizer(p)["input_ids"]) for p in data.prompts))
    cases = build_cases(wrapper, tokens, prompt_len, pad)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rows = compare_cases(wrapper, session, cases, spec.export.tolerances.max_abs)
    prompts = [tokenizer(p)["input_ids"] for p in data.prompts[:PARITY_PROMPTS]]
    matches = greedy_matches(
        model, OrtDecoder(onnx_path, session=session), prompts, spec.generation.parity_new_tokens, pad, eos
    )
    failures = tolerance_failures(rows, spec.export.tolerances.max_abs)
    if not all(matches):
        failures.append(
            f"greedy generation differs from PyTorch generate() on {matches.count(False)} of {len(matches)} prompts"
        )
    return ParityReport(
        onnx=str(onnx_path),
        exporter=exporter,
        agreement_kind="tokens",
        cases=[c.name for c in cases],
        outputs=rows,
        generation_match=matches.count(True) / len(matches),
        examples=len(data.texts),
        tolerances=spec.export.tolerances,
        passed=not failures,
        failures=failures,
        notes=[f"greedy: {spec.generation.parity_new_tokens} new tokens on {len(prompts)} held-out prompts"],
    )


def export_decoder(spec: ModelSpec, workdir: Path, force: bool = False) -> ExportResult:
    """Export the causal LM with its KV cache; prove parity at several shapes and in generation."""
    workdir = Path(workdir)
    target = workdir / ONNX_DIR
    check_overwrite(target / ONNX_FILE, force)
    manifest = Manifest.load(workdir, spec.name)
    checkpoint = checkpoint_path(spec, manifest)
    model, tokenizer = load_decoder(checkpoint, spec.source.allow_pickle)
    wrapper = DecoderWithPast(model).eval()
    # Trace at a shape with no 0 or 1 in any dynamic dim, so the exporter cannot specialise one.
    tokens = [tokenizer(t)["input_ids"] for t in heldout(spec, limit=4).texts]
    example = build_cases(wrapper, tokens, 3, tokenizer.pad_token_id)[-1].feeds
    rejected = workdir / REJECTED_DIR
    workdir.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, force=True) as tmp, tempfile.TemporaryDirectory(dir=workdir) as scratch:
        raw = Path(scratch) / ONNX_FILE
        outcome = export_module(
            wrapper,
            {name: torch.from_numpy(v) for name, v in example.items()},
            raw,
            wrapper.shape.output_names,
            wrapper.shape.axes(),
            opset=spec.export.opset,
            exporter=spec.export.exporter,
            fallback=spec.export.fallback,
            external_threshold=int(spec.export.external_data_threshold_mb * 1024**2),
        )
        report = _verify(spec, model, tokenizer, wrapper, raw, outcome.exporter)
        report.task, report.opset = spec.task, outcome.opset
        report.exporter_requested, report.exporter_attempts = spec.export.exporter, list(outcome.attempts)
        report.dynamic_axes = {k: {str(a): n for a, n in v.items()} for k, v in wrapper.shape.axes().items()}
        report.external_data = outcome.external_data
        report.onnx = str(target / ONNX_FILE)
        publish_or_reject(report, Path(scratch), tmp, target, rejected, "KV-cache export", spec.name)
    shutil.rmtree(rejected, ignore_errors=True)
    record = _record(spec, workdir, manifest, wrapper, checkpoint, outcome, report)
    return ExportResult(
        onnx=(target / ONNX_FILE).resolve(),
        report=report,
        report_path=(target / JSON_NAME).resolve(),
        record=record,
    )


def _record(spec, workdir, manifest, wrapper, checkpoint, outcome, report) -> ExportRecord:
    onnx_file = (workdir / ONNX_DIR / ONNX_FILE).resolve()
    shape = wrapper.shape
    record = manifest.record(
        ExportRecord(
            artifacts=export_artifacts(workdir / ONNX_DIR, ONNX_FILE, checkpoint),
            metrics=parity_metrics(report, generation_match=report.generation_match or 0.0),
            details=ExportDetails(
                task=spec.task,
                modality="text",
                exporter=outcome.exporter,
                exporter_requested=spec.export.exporter,
                opset=outcome.opset,
                input_names=shape.input_names,
                output_names=shape.output_names,
                dynamic_axes=report.dynamic_axes,
                graph_inputs=graph_dims(onnx_file),
                graph_outputs=graph_dims(onnx_file, "output"),
                decoder=DecoderShape(
                    layers=shape.layers,
                    kv_heads=shape.kv_heads,
                    head_dim=shape.head_dim,
                    vocab_size=shape.vocab_size,
                    model_type=wrapper.model.config.model_type,
                ),
                labels=None,
                external_data=outcome.external_data is not None,
            ),
        )
    )
    manifest.save(workdir)
    return record
