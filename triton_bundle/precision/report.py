"""What the precision stage says about each variant: gate.json (typed) and gate.md (for people)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from triton_bundle.precision.evaluate import VariantMetrics
from triton_bundle.precision.fp16 import Fp16Info
from triton_bundle.precision.gate import GateResult
from triton_bundle.precision.int8_qdq import QdqSettings
from triton_bundle.precision.record import CalibrationInfo, GateSummary
from triton_bundle.precision.sensitivity import LayerCost, SensitivityReport


class VariantReport(BaseModel):
    """One variant's verdict and everything needed to understand it."""

    variant: str
    passed: bool
    model: str | None = Field(
        None, description="the published model, relative to the workdir; None when rejected"
    )
    backend: str
    tensorrt_compatible: bool
    size_mb: float
    fp32_size_mb: float
    gate: GateResult
    metrics: VariantMetrics
    kept_float_layers: list[LayerCost] = Field(default_factory=list)
    quantized_layers: int | None = None  # layers with INT8 inputs, out of `quantizable_layers`
    quantizable_layers: int | None = None
    calibration: CalibrationInfo | None = None
    quantization: QdqSettings | None = None
    fp16: Fp16Info | None = None
    sensitivity: SensitivityReport | None = None
    latency_ms: dict[str, float] = Field(
        default_factory=dict, description="'batch 1' -> ms (onnxruntime CPU)"
    )
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> GateSummary:
        """The manifest's gate for this variant: the verdict plus what a later stage needs to know."""
        return GateSummary(
            **self.gate.model_dump(),
            metrics=self.metrics.model_dump(exclude_none=True),
            kept_float_layers=[c.layer for c in self.kept_float_layers],
            calibration=self.calibration,
            tensorrt_compatible=self.tensorrt_compatible,
            backend=self.backend,
            size_mb=self.size_mb,
        )

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "REJECTED"
        g = self.gate
        lines = [
            f"# Precision variant `{self.variant}`: {verdict}",
            "",
            f"{g.metric} vs FP32 = **{g.value:.4f}** (budget {g.budget:g}, margin {g.margin:+.4f}) on "
            f"{self.metrics.examples} held-out examples. Backend: {self.backend}. "
            f"TensorRT format: {'yes' if self.tensorrt_compatible else 'no (onnxruntime only)'}. "
            f"Size {self.size_mb:.1f} MB (FP32 {self.fp32_size_mb:.1f} MB).",
            "",
            "| check | value | limit | passed |",
            "|---|---|---|---|",
        ]
        for c in g.checks:
            lines.append(
                f"| {c.name} | {c.value:.4f} | {'>=' if c.higher_is_better else '<='} {c.limit:g} "
                f"| {'yes' if c.passed else 'NO'} |"
            )
        m = self.metrics
        if m.accuracy is not None:
            lines.append(
                f"\nAccuracy {m.accuracy:.4f} (FP32 {m.accuracy_fp32:.4f}); macro-F1 {m.macro_f1:.4f} "
                f"(FP32 {m.macro_f1_fp32:.4f})."
            )
        if m.mean_cosine is not None:
            lines.append(f"\nCosine to FP32: mean {m.mean_cosine:.5f}, min {m.min_cosine:.5f}.")
        lines.append(f"\nOutput PSNR {m.psnr_db:.1f} dB, max abs difference {m.max_abs:.3g}.")
        if self.calibration:
            c = self.calibration
            lines.append(f"\nCalibration: {c.method} on {c.samples} samples from `{c.source}`.")
        if self.kept_float_layers:
            lines += [
                "",
                f"## Layers kept in float ({len(self.kept_float_layers)} of {self.quantizable_layers})",
                "",
                f"| layer | SQNR dB (rank key) | {g.metric} if quantized | FP32 weights MB |",
                "|---|---|---|---|",
            ]
            for k in self.kept_float_layers:
                sqnr = "-" if k.sqnr_db is None else f"{k.sqnr_db:.1f}"
                cost = "not measured" if k.metric_if_quantized is None else f"{k.metric_if_quantized:.4f}"
                lines.append(f"| `{k.layer}` | {sqnr} | {cost} | {k.float_weight_mb:.2f} |")
        if self.sensitivity:
            s = self.sensitivity
            lines += ["", f"## Search ({s.evaluations} of at most {s.max_evaluations} evaluations)", ""]
            lines += [
                f"- {st.phase}: {st.float_layers} float layers -> {st.metric:.4f} "
                f"({'pass' if st.passed else 'fail'})"
                for st in s.steps
            ]
            if s.note:
                lines.append(f"\n{s.note}")
        if self.latency_ms:
            lines.append(
                "\nLatency (onnxruntime, this CPU): "
                + ", ".join(f"{k}: {v:.1f} ms" for k, v in self.latency_ms.items())
            )
        if self.notes:
            lines += ["", "## Notes", "", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"
