"""Precision variants of a KV-cache decoder, gated by language-model quality on held-out text.

FP16 keeps LayerNorm / RMSNorm (Pow, ReduceMean, Sqrt) / Softmax in FP32 (spec.precision.fp16_keep_fp32_ops)
with FP32 inputs and outputs, so the cache the server holds stays FP32; INT8 dynamic is the CPU variant;
INT8 Q/DQ (calibrated on held-out prefills) is TensorRT's. Each is judged by teacher-forced next-token
agreement with FP32 and the perplexity increase, against the spec's budget, then published like the
other tasks' variants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from triton_bundle.generation.lm_metrics import (
    LMScores,
    TokenBatch,
    all_logits,
    judge_lm,
    score,
    token_batches,
)
from triton_bundle.generation.ort_decoder import OrtDecoder
from triton_bundle.generation.prompts import heldout
from triton_bundle.manifest import Manifest
from triton_bundle.precision import int8_qdq
from triton_bundle.precision.calibration import CalibrationSet
from triton_bundle.precision.evaluate import VariantMetrics
from triton_bundle.precision.gated import fp16_variant, int8_dynamic_variant, publish_gated_variants
from triton_bundle.precision.report import CalibrationInfo, VariantReport
from triton_bundle.spec import ModelSpec

EVAL_BATCH = 8


@dataclass
class _Decoder:
    spec: ModelSpec
    fp32: Path
    batches: list[TokenBatch]
    reference: list
    scratch: Path
    pad_id: int

    def judge(self, path: Path) -> tuple[LMScores, VariantMetrics, object]:
        scores = score(self.reference, all_logits(OrtDecoder(path), self.batches), self.batches)
        metrics = VariantMetrics(
            examples=sum(b.ids.shape[0] for b in self.batches), psnr_db=scores.psnr_db, max_abs=scores.max_abs
        )
        return scores, metrics, judge_lm(scores, self.spec.precision.budget)

    def report(self, variant: str, path: Path, **fields) -> tuple[VariantReport, Path | None]:
        scores, metrics, gate = self.judge(path)
        notes = [
            f"teacher-forced on {scores.positions} held-out next-token positions: agreement "
            f"{scores.next_token_agreement:.4f}, perplexity {scores.perplexity:.3f} vs FP32 {scores.perplexity_fp32:.3f}",
            *fields.pop("notes", []),
        ]
        report = VariantReport(
            variant=variant,
            passed=gate.passed,
            size_mb=path.stat().st_size / 1e6,
            fp32_size_mb=self.fp32.stat().st_size / 1e6,
            gate=gate,
            metrics=metrics,
            notes=notes,
            **fields,
        )
        return report, path if gate.passed else None


def _int8_qdq(ctx: _Decoder):
    from triton_bundle.export.decoder import position_ids_for

    path = ctx.scratch / "int8.onnx"
    cal = ctx.spec.precision.calibration
    decoder = OrtDecoder(ctx.fp32)
    feeds = []
    for batch in ctx.batches:  # held-out prefills: the activations a served prompt produces
        feeds.append(
            {
                "input_ids": batch.ids,
                "attention_mask": batch.mask,
                "position_ids": position_ids_for(batch.mask, batch.ids.shape[1]),
            }
            | decoder.empty_past(batch.ids.shape[0])
        )
    samples = min(cal.samples, sum(b.ids.shape[0] for b in ctx.batches))
    calibration = CalibrationSet(
        feeds[: -(-samples // EVAL_BATCH)], str(ctx.spec.data.eval), samples, cal.method
    )
    settings = int8_qdq.QdqSettings(method=cal.method, op_types=list(ctx.spec.precision.int8_op_types))
    int8_qdq.quantize_qdq(ctx.fp32, path, settings, ctx.scratch / "int8-calibration.json", calibration)
    return ctx.report(
        "int8",
        path,
        backend=int8_qdq.BACKEND,
        tensorrt_compatible=True,
        quantization=settings,
        calibration=CalibrationInfo(method=cal.method, samples=samples, source=calibration.source, notes=[]),
        notes=["calibrated on the held-out texts the gate also reads (the spec names no separate set)"],
    )


CPU_NOTE = "onnxruntime dynamic quantization: the CPU serving variant, not a TensorRT format"
DECODER_BUILDERS: dict[str, Callable[[_Decoder], tuple]] = {
    "fp16": fp16_variant,
    "int8-dynamic": lambda ctx: int8_dynamic_variant(ctx, notes=[CPU_NOTE]),
    "int8": _int8_qdq,
}


def make_decoder_variants(spec: ModelSpec, workdir: Path, wanted: list[str]):
    """Build, gate, publish and record the decoder's variants (the precision stage's text-generation path)."""
    from transformers import AutoTokenizer

    manifest = Manifest.load(workdir, spec.name)
    export = manifest.require("export", "triton-bundle export SPEC")
    tokenizer = AutoTokenizer.from_pretrained(export.artifact("checkpoint"))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [tokenizer(t)["input_ids"][: spec.shapes.sequence.max] for t in heldout(spec).texts]
    fp32 = export.artifact("onnx")
    batches = token_batches(rows, pad, EVAL_BATCH)
    reference = all_logits(OrtDecoder(fp32), batches)
    return publish_gated_variants(
        manifest, workdir, fp32, wanted, DECODER_BUILDERS,
        lambda scratch: _Decoder(spec, fp32, batches, reference, scratch, pad),
    )  # fmt: skip
