"""What the benchmark measures, made or reused: fine-tuned checkpoint, FP32 ONNX, precision variants.

The user's workdir (artifacts/<name>) is reused; only missing stages run there. Repository variants are
generated from a private copy of its manifest under the output directory, so benchmarking never
replaces the repository record (or files) the user serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from triton_bundle.errors import BundleError
from triton_bundle.export.record import ExportRecord
from triton_bundle.manifest import Manifest
from triton_bundle.precision.record import PrecisionRecord
from triton_bundle.spec import ModelSpec

FP32 = "fp32"


@dataclass
class BenchInputs:
    spec: ModelSpec
    workdir: Path  # the user's
    private_workdir: Path  # ours: repository variants are generated from here
    checkpoint: Path
    input_names: list[str]
    variants: dict[str, Path]  # variant -> model.onnx (fp32 first)
    provenance: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _stage_ran(manifest: Manifest, stage: str, artifact: str) -> bool:
    record = manifest.stages.get(stage)
    return record is not None and artifact in record.artifacts and Path(record.artifacts[artifact]).exists()


def _ensure_export(spec: ModelSpec, workdir: Path, say: Callable[[str], None]) -> Manifest:
    from triton_bundle.export.stage import export_model
    from triton_bundle.finetune import finetune

    manifest = Manifest.load(workdir, spec.name)
    if _stage_ran(manifest, "export", "onnx"):
        return manifest
    if (
        spec.finetune is not None
        and spec.source.path is None
        and not _stage_ran(manifest, "finetune", "checkpoint")
    ):
        say("fine-tuning (no checkpoint in the workdir yet)")
        finetune(spec, workdir, force=True)
    say("exporting to ONNX (no export in the workdir yet)")
    export_model(spec, workdir, force=True)
    return Manifest.load(workdir, spec.name)


def _ensure_precision(
    spec: ModelSpec, workdir: Path, wanted: Sequence[str], say: Callable[[str], None]
) -> tuple[Manifest, list[str]]:
    """Run the precision stage for variants it has not judged yet; returns notes on rejected ones."""
    from triton_bundle.precision.stage import make_variants

    manifest = Manifest.load(workdir, spec.name)
    record = manifest.get(PrecisionRecord)
    gates = record.details.gates if record else {}
    missing = [v for v in wanted if v not in gates]
    if missing:
        say(f"making precision variants {missing} (the precision stage had not run for them)")
        make_variants(spec, workdir, variants=missing, force=True)
        manifest = Manifest.load(workdir, spec.name)
        gates = manifest.need(PrecisionRecord).details.gates
    notes = []
    for variant in wanted:
        gate = gates.get(variant)
        if gate is None or not gate.passed:
            verdict = f"{gate.metric} {gate.value}, budget {gate.budget}" if gate else "not judged"
            notes.append(
                f"{variant}: rejected by the precision gate ({verdict}); the stage publishes no model "
                "for it, so it is not measured"
            )
    return manifest, notes


def prepare_inputs(
    spec: ModelSpec,
    workdir: Path,
    out_dir: Path,
    variants: Sequence[str],
    say: Callable[[str], None] = print,
) -> BenchInputs:
    workdir = Path(workdir).resolve()
    manifest = _ensure_export(spec, workdir, say)
    export = manifest.need(ExportRecord)
    notes: list[str] = []
    wanted = [v for v in variants if v != FP32]
    if wanted:
        try:
            manifest, rejected = _ensure_precision(spec, workdir, wanted, say)
            notes += rejected
        except (BundleError, ImportError) as exc:
            notes.append(f"precision variants unavailable ({exc}); only FP32 is measured")
            manifest = Manifest.load(workdir, spec.name)
    found: dict[str, Path] = {FP32: export.artifact("onnx")}
    provenance = {FP32: f"export stage: {found[FP32]}"}
    precision = manifest.stages.get("precision")
    for variant in wanted:
        if precision is None or variant not in precision.artifacts:
            continue
        path = precision.artifact(variant)
        path = path / "model.onnx" if path.is_dir() else path
        if path.is_file():
            found[variant] = path
            provenance[variant] = f"precision stage: {path}"

    private = Path(out_dir).resolve() / "work"
    private.mkdir(parents=True, exist_ok=True)
    # Absolute paths outside the private workdir stay absolute in the copy.
    Manifest.model_validate(manifest.model_dump()).save(private)
    return BenchInputs(
        spec=spec,
        workdir=workdir,
        private_workdir=private,
        checkpoint=export.artifact("checkpoint"),
        input_names=list(export.details.input_names),
        variants={v: found[v] for v in variants if v in found},
        provenance=provenance,
        notes=notes,
    )
