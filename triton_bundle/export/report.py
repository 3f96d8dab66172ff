"""The verification report written beside every ONNX file (JSON + a short markdown table)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from triton_bundle.export.tasks import Agreement
from triton_bundle.spec import Tolerances

JSON_NAME = "verification.json"
MARKDOWN_NAME = "verification.md"


class OutputParity(BaseModel):
    case: str
    output: str
    shape: list[int]
    max_abs: float
    max_rel: float
    within_tolerance: bool


def tolerance_failures(rows: list[OutputParity], max_abs: float) -> list[str]:
    """One line per compared output outside the absolute tolerance, naming its case and output."""
    return [
        f"{r.case} {r.output}: max abs {r.max_abs:.3g} > {max_abs:g}" for r in rows if not r.within_tolerance
    ]


class CleanupRecord(BaseModel):
    """What the optional graph clean-up did, and whether its result was kept."""

    tool: str
    kept: bool
    nodes_before: int
    nodes_after: int | None = None
    reason: str


class ParityReport(BaseModel):
    onnx: str
    exporter: str
    agreement_kind: Agreement
    cases: list[str]
    outputs: list[OutputParity]
    label_agreement: float | None = None
    min_cosine: float | None = None
    generation_match: float | None = Field(
        None, description="text-generation: share of prompts whose greedy ONNX tokens equal generate()'s"
    )
    examples: int = 0
    tolerances: Tolerances
    passed: bool
    failures: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    # Filled by the export stage (absent when parity is run on its own).
    task: str | None = None
    opset: int | None = None
    exporter_requested: str | None = None
    exporter_attempts: list[str] = Field(default_factory=list, description="exporters that failed first")
    dynamic_axes: dict[str, dict[str, str]] = Field(default_factory=dict)
    frozen_dim_check: str | None = None
    cleanup: CleanupRecord | None = None
    external_data: str | None = Field(None, description="weights file beside the model, when external")

    def markdown(self) -> str:
        lines = [
            f"# Export parity: `{Path(self.onnx).name}` ({self.exporter} exporter"
            + (f", opset {self.opset}" if self.opset else "")
            + ")",
            "",
            f"**{'PASSED' if self.passed else 'FAILED'}** on {self.examples} real examples; "
            f"tolerances max_abs {self.tolerances.max_abs:g}, max_rel {self.tolerances.max_rel:g}.",
            "",
            "| case | output | shape | max abs | max rel | ok |",
            "|---|---|---|---|---|---|",
        ]
        for o in self.outputs:
            lines.append(
                f"| {o.case} | {o.output} | {'x'.join(map(str, o.shape))} | {o.max_abs:.3g} | {o.max_rel:.3g} "
                f"| {'yes' if o.within_tolerance else 'NO'} |"
            )
        if self.label_agreement is not None:
            lines.append(f"\nLabel agreement: {self.label_agreement:.4f}")
        if self.min_cosine is not None:
            lines.append(f"\nMinimum cosine similarity: {self.min_cosine:.6f}")
        if self.generation_match is not None:
            lines.append(
                f"\nGreedy generation equal to PyTorch generate(): {self.generation_match:.4f} of prompts"
            )
        facts = []
        if self.exporter_attempts:
            facts += [f"exporter failed first: {attempt}" for attempt in self.exporter_attempts]
        if self.frozen_dim_check:
            facts.append(f"dynamic dims: {self.frozen_dim_check}")
        if self.cleanup:
            verdict = "kept" if self.cleanup.kept else "not kept"
            nodes = (
                f"{self.cleanup.nodes_before} -> {self.cleanup.nodes_after} nodes; "
                if self.cleanup.nodes_after
                else ""
            )
            facts.append(f"graph clean-up ({self.cleanup.tool}) {verdict}: {nodes}{self.cleanup.reason}")
        if self.external_data:
            facts.append(
                f"weights stored as external data: `{self.external_data}` (keep it beside the model)"
            )
        facts += self.notes
        if facts:
            lines.append("")
            lines += [f"- {fact}" for fact in facts]
        if self.failures:
            lines.append("\n**Failures**")
            lines += [f"- {f}" for f in self.failures]
        return "\n".join(lines) + "\n"
