"""The typed results of one benchmark run: every row has throughput, latency percentiles and accuracy."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Section = Literal["baseline", "ort", "served", "gpu"]


class Latency(BaseModel):
    """Percentiles of one measurement, in milliseconds (per request, or per batch in-process)."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    samples: int


class Accuracy(BaseModel):
    """How the path under test labels the held-out data, against FP32 onnxruntime and the gold labels."""

    texts: int
    agreement_with_fp32: float = Field(description="share of held-out texts labelled as FP32 labels them")
    accuracy: float | None = Field(None, description="share labelled as the data's gold label")


class Limit(BaseModel):
    """The machine's bound for this row: model FLOPs per sequence over the measured matmul throughput."""

    gflop_per_sequence: float
    fp_gflop_per_sequence: float = Field(description="float matmul work (FP32 rate applies)")
    int8_gop_per_sequence: float = Field(description="INT8 matmul work (INT8 rate applies)")
    int8_share: float = Field(description="share of the matmul work that runs in INT8")
    max_sequences_per_s: float
    fraction_of_limit: float = Field(description="measured sequences/s over max_sequences_per_s")
    basis: str = Field(description="the sequence lengths the FLOPs were counted at")


class CpuSplit(BaseModel):
    """CPU milliseconds one request costs in each process (client, server, Python-backend stubs)."""

    per_request_ms: dict[str, float]
    wall_s: float
    cpu_utilisation: float = Field(description="all processes' CPU seconds over wall seconds (2.0 = 2 cores)")


class StageSplit(BaseModel):
    """Triton's statistics API for one model of the ensemble over a measured window."""

    model: str
    requests: int
    avg_batch_size: float | None
    queue_ms: float | None
    compute_ms: float | None


class Row(BaseModel):
    section: Section
    name: str = Field(description="what ran, e.g. 'triton int8-dynamic dyn-batch x1'")
    variant: str
    batch_size: int | None = None
    sequence: str | None = Field(None, description="'real mix' or a fixed padded length")
    concurrency: int | None = None
    throughput: float = Field(description="sequences per second")
    latency: Latency
    requests: int
    errors: int = 0
    accuracy: Accuracy | None = None
    limit: Limit | None = None
    cpu: CpuSplit | None = None
    stages: list[StageSplit] = Field(default_factory=list)
    settings: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class MatmulRate(BaseModel):
    kind: Literal["fp32", "int8"]
    size: int
    threads: int
    best_gops: float
    median_gops: float
    runs: int


class MachineInfo(BaseModel):
    cpu_model: str
    cores: int
    load_average_before: tuple[float, float, float]
    load_average_after: tuple[float, float, float] | None = None
    python: str
    onnxruntime: str
    torch: str
    triton: str | None = None
    gpu: str | None = None
    matmul: list[MatmulRate] = Field(default_factory=list)


class TargetCheck(BaseModel):
    name: str
    passed: bool | None = Field(description="None when a side of the comparison was not measured")
    measured: str
    required: str
    where_time_goes: list[str] = Field(default_factory=list)


class SkippedSection(BaseModel):
    section: str = Field(description="limits, ort, baseline, served or gpu")
    reason: str


class BenchmarkReport(BaseModel):
    model: str
    mode: Literal["quick", "full"]
    started_at: str
    wall_s: float
    machine: MachineInfo
    inputs: dict[str, str] = Field(default_factory=dict, description="where each ONNX variant came from")
    rows: list[Row] = Field(default_factory=list)
    targets: list[TargetCheck] = Field(default_factory=list)
    skipped: list[SkippedSection] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def section(self, name: Section) -> list[Row]:
        return [row for row in self.rows if row.section == name]
