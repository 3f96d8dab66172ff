"""The precision stage's manifest record: one `GateSummary` per variant, and FP32's numbers.

Light on purpose (pydantic only): the engine, repository and benchmark readers import it without
onnx or onnxruntime.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from triton_bundle.manifest import StageDetails, StageRecord


class GateCheck(BaseModel):
    name: str
    value: float
    limit: float
    higher_is_better: bool
    passed: bool

    @property
    def margin(self) -> float:
        """Headroom to the limit: positive when passing, negative by how much it missed."""
        return self.value - self.limit if self.higher_is_better else self.limit - self.value

    def describe(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        return f"{self.name} {self.value:.4f} (needs {sign} {self.limit:g})"


class CalibrationInfo(BaseModel):
    method: str
    samples: int
    source: str  # a data file, or "random"
    notes: list[str] = Field(default_factory=list)


class GateSummary(BaseModel):
    """One variant's verdict as later stages need it: passed, served how, TensorRT-ready or not.

    Only `passed` is required: a gate written by hand or by an older version may hold no more."""

    passed: bool
    metric: str = ""
    value: float = 0.0
    budget: float = 0.0
    margin: float = 0.0
    checks: list[GateCheck] = Field(default_factory=list)
    metrics: dict[str, object] = Field(
        default_factory=dict, description="the variant's measured metrics (the gate report's, for people)"
    )
    kept_float_layers: list[str] = Field(default_factory=list)
    calibration: CalibrationInfo | None = None
    tensorrt_compatible: bool | None = None  # None: not recorded
    backend: str = ""
    size_mb: float = 0.0

    def describe(self) -> str:
        failed = [c.describe() for c in self.checks if not c.passed]
        return f"{self.metric} {self.value:.4f}, budget {self.budget:g}" + (
            f"; failed: {', '.join(failed)}" if failed else ""
        )


class Fp32Summary(BaseModel):
    onnx: str
    size_mb: float
    accuracy: float | None = None
    macro_f1: float | None = None
    latency_ms: dict[str, float] = Field(default_factory=dict)


class StepsRow(BaseModel):
    """Diffusion: FP32 image quality and speed at one sampling-step count."""

    steps: int
    psnr_db: float  # vs the most steps in the table (capped at 100: identical images)
    ssim: float
    class_agreement: float  # digit classifier's reading == the class asked for
    seconds_per_image: float  # onnxruntime FP32 UNet + numpy DDIM, batch of all gate seeds, this host


class PrecisionDetails(StageDetails):
    gates: dict[str, GateSummary] = Field(default_factory=dict)
    fp32: Fp32Summary | None = None
    steps_table: list[StepsRow] = Field(default_factory=list)  # diffusion only


class PrecisionRecord(StageRecord):
    STAGE = "precision"
    RERUN = "triton-bundle precision SPEC"

    stage: str = STAGE
    details: PrecisionDetails

    def gate(self, variant: str) -> GateSummary | None:
        return self.details.gates.get(variant)
