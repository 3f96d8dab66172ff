"""The compress report: teacher and each student side by side (size, speed, agreement, gate),
the importance ranking, as JSON, markdown and a speed-vs-agreement plot."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from triton_bundle.compress.distill import DistillStats
from triton_bundle.compress.importance import ImportanceReport
from triton_bundle.compress.measure import Size, Speed
from triton_bundle.precision.evaluate import VariantMetrics
from triton_bundle.precision.gate import GateResult

# The report's columns, teacher and students side by side: markdown and the CLI's table share them.
COLUMNS = (
    "model",
    "layers",
    "FFN",
    "params",
    "GFLOPs/seq",
    "MB",
    "ms @1",
    "ms @8",
    "seq/s @8",
    "speed-up @8",
    "agreement",
    "accuracy",
    "gate",
)


class ModelRow(BaseModel):
    """One model's numbers: the teacher, or a student candidate."""

    name: str
    kept_layers: list[int]
    size: Size
    speed: list[Speed] = Field(default_factory=list)
    metrics: VariantMetrics | None = None
    gate: GateResult | None = None
    distill: DistillStats | None = None

    @property
    def passed(self) -> bool:
        return self.gate is not None and self.gate.passed

    def sequences_per_s(self, batch: int) -> float | None:
        return next((s.sequences_per_s for s in self.speed if s.batch == batch), None)

    def ms(self, batch: int) -> float | None:
        return next((s.ms_per_batch for s in self.speed if s.batch == batch), None)


class CompressReport(BaseModel):
    model: str
    task: str
    teacher_checkpoint: str
    family_layout: str
    mean_tokens: float
    eval_examples: int
    teacher: ModelRow
    candidates: list[ModelRow]
    selected: str | None  # the published student's name
    importance: ImportanceReport
    search: bool
    notes: list[str] = Field(default_factory=list)

    def speedup(self, row: ModelRow, batch: int = 8) -> float | None:
        mine, base = row.sequences_per_s(batch), self.teacher.sequences_per_s(batch)
        return None if not mine or not base else mine / base

    def table_rows(self) -> list[list[str]]:
        rows = []
        for row in [self.teacher, *self.candidates]:
            m, gate = row.metrics, row.gate
            rows.append(
                [
                    row.name,
                    f"{row.size.layers}",
                    f"{row.size.ffn}",
                    f"{row.size.params / 1e6:.1f}M",
                    f"{row.size.flops_per_sequence / 1e9:.3f}",
                    f"{row.size.size_mb:.1f}",
                    _num(row.ms(1), ".2f"),
                    _num(row.ms(8), ".2f"),
                    _num(row.sequences_per_s(8), ".0f"),
                    _num(self.speedup(row), ".2f", "x"),
                    _agreement(m),
                    _num(m.accuracy if m else None, ".4f") if row is not self.teacher else _teacher_acc(self),
                    "-"
                    if gate is None
                    else ("pass" if gate.passed else "FAIL: " + "; ".join(gate.failures())),
                ]
            )
        return rows

    def markdown(self) -> str:
        head = list(COLUMNS)
        lines = [
            f"# Compress report: {self.model} ({self.task})",
            "",
            f"Teacher: `{self.teacher_checkpoint}`; {self.eval_examples} held-out examples, mean "
            f"{self.mean_tokens:.1f} tokens; in-process onnxruntime (CPU) over the real length mix.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        lines += ["| " + " | ".join(r) + " |" for r in self.table_rows()]
        lines += [
            "",
            f"Published student: **{self.selected or 'none (every candidate failed the gate)'}**",
            "",
        ]
        imp = self.importance
        lines += [
            "## Importance",
            "",
            f"{imp.method}; {imp.samples} training texts.",
            "",
            "| layer | distortion if skipped | mean FFN-neuron score | heads (normalised) |",
            "|---|---|---|---|",
        ]
        for layer in imp.layers:
            heads = " ".join(f"{h:.2f}" for h in layer.heads)
            lines.append(f"| {layer.layer} | {layer.skip_distortion:.4g} | {layer.ffn_mean:.3g} | {heads} |")
        lines += ["", f"Greedy removal order (least important first): {imp.removal_order}", ""]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def _agreement(m: VariantMetrics | None) -> str:
    if m is None:
        return "-"
    if m.label_agreement is not None:
        return f"{m.label_agreement:.4f}"
    return "-" if m.mean_cosine is None else f"cos {m.mean_cosine:.4f}"


def _teacher_acc(report: CompressReport) -> str:
    first = next((c.metrics for c in report.candidates if c.metrics is not None), None)
    return _num(first.accuracy_fp32 if first else None, ".4f")


def plot(report: CompressReport, path: Path) -> Path:
    """Throughput at batch 8 vs agreement with the teacher: one point per model, the gate's line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from triton_bundle.plotting import fit_axis

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    budget, speeds, values = None, [], []
    for row in [report.teacher, *report.candidates]:
        speed = row.sequences_per_s(8)
        if speed is None:
            continue
        if row is report.teacher:
            value, colour = 1.0, "black"
        else:
            value = row.gate.value if row.gate else 0.0
            budget = row.gate.budget if row.gate else budget
            colour = "tab:green" if row.passed else "tab:red"
        speeds.append(speed)
        values.append(value)
        ax.scatter([speed], [value], color=colour, s=60, zorder=3)
        ax.annotate(row.name, (speed, value), textcoords="offset points", xytext=(6, 4), fontsize=9)
    if budget is not None:
        ax.axhline(budget, color="tab:gray", linestyle="--", linewidth=1, label=f"gate ({budget:g})")
        ax.legend(loc="lower left")
    # Throughput from zero (the plotting rules); agreement zoomed to the data and the gate's line.
    fit_axis(ax, [s * 1.15 for s in speeds], "x", zero_based=True)
    fit_axis(ax, [*values, *([budget] if budget is not None else [])], "y", zero_based=False)
    metric = next((c.gate.metric for c in report.candidates if c.gate), "agreement")
    ax.set_xlabel("sequences/s at batch 8 (onnxruntime, CPU, real length mix)")
    ax.set_ylabel(f"{metric} with the teacher")
    ax.set_title(f"{report.model}: teacher vs students (green: passed, red: rejected)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
