"""The engine stage: for each TensorRT-bound variant, its ONNX from the manifest -> profile -> plan.

GPU builds (datacenter TensorRT) write `<workdir>/engines/<variant>/model.plan` + `engine.json`, the
artifact the repository stage serves. Ahead-of-time checks (TensorRT for RTX, any host) write
`<workdir>/engines/aot/<variant>/aot_check.json` (plus the RTX plan and its engine.json if asked);
their plans are never recorded as the variant's engine, since Triton cannot serve them.
Both record into one "engine" StageRecord, one variant at a time, keeping the other variants' entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from triton_bundle.atomic import atomic_path, check_overwrite, write_bytes_atomic
from triton_bundle.data import load_texts
from triton_bundle.engine.aot_check import AotCheckResult, aot_check
from triton_bundle.engine.builder import build_engine, container_command
from triton_bundle.engine.errors import SourceOnnxError
from triton_bundle.engine.manifest import ENGINE_MANIFEST_NAME, EngineManifest
from triton_bundle.engine.profiles import ProfilePlan, ProfileSource, eval_data_plan, spec_plan, token_lengths
from triton_bundle.engine.record import EngineBuild, EngineRecord
from triton_bundle.engine.trt_build import BuildOptions
from triton_bundle.errors import BundleError
from triton_bundle.export.record import ExportRecord
from triton_bundle.manifest import Manifest, dump_json
from triton_bundle.precision.record import PrecisionRecord
from triton_bundle.spec import ModelSpec
from triton_bundle.variants import ENGINE_VARIANTS

VARIANTS = ENGINE_VARIANTS
STAGE = "engine"
ENGINES_DIR = "engines"
AOT_DIR = "aot"
PLAN_FILE = "model.plan"
AOT_REPORT = "aot_check.json"
TIMING_CACHE_FILE = "timing.cache"

# Where each variant's ONNX is recorded: (stage, artifact key, the command that records it).
SOURCES: dict[str, tuple[str, str, str]] = {
    "fp32": ("export", "onnx", "triton-bundle export SPEC"),
    "fp16": ("precision", "fp16", "triton-bundle precision SPEC"),
    "int8": ("precision", "int8", "triton-bundle precision SPEC"),
}


class EngineResult(BaseModel):
    variant: str
    mode: Literal["gpu", "aot"]
    passed: bool
    directory: Path
    source_onnx: Path
    profile_plan: ProfilePlan
    engine: EngineManifest | None = None  # GPU builds
    aot: AotCheckResult | None = None  # ahead-of-time checks


def relocate(recorded: Path, workdir: Path) -> Path | None:
    """The recorded artifact, or the same file under `workdir` when an absolute path was recorded on
    another mount point (the host checkout seen from a container). Paths inside the workdir are
    stored relative by the manifest and need no help."""
    if recorded.is_file():
        return recorded
    parts = recorded.parts
    for start in range(1, len(parts)):
        candidate = Path(workdir, *parts[start:])
        if candidate.is_file():
            return candidate
    return None


def _check_precision_applies(spec: ModelSpec, manifest: Manifest, variant: str) -> None:
    """Never advise `triton-bundle precision` for a model the precision stage would refuse."""
    from triton_bundle.precision import SUPPORTED_MODALITIES

    export = manifest.get(ExportRecord)
    modality = export.details.modality if export is not None else "text"
    if modality not in SUPPORTED_MODALITIES:
        raise SourceOnnxError(
            f"no {variant} variant for '{spec.name}': the precision stage makes none for {modality} "
            f"models ({spec.task}); build fp32"
        )


def source_onnx(spec: ModelSpec, manifest: Manifest, workdir: Path, variant: str) -> Path:
    """The ONNX a variant is built from, as the earlier stage recorded it."""
    if variant not in SOURCES:
        raise SourceOnnxError(f"no TensorRT variant '{variant}' (expected one of {', '.join(VARIANTS)})")
    stage, key, command = SOURCES[variant]
    if stage == "precision":
        _check_precision_applies(spec, manifest, variant)
    record = manifest.require(stage, command.replace("SPEC", "<spec>"))
    if key not in record.artifacts:
        raise SourceOnnxError(
            f"the '{stage}' stage recorded no '{key}' ONNX for '{spec.name}' (it has: "
            f"{', '.join(sorted(record.artifacts)) or 'nothing'}); run {command.replace('SPEC', '<spec>')} "
            f"with '{variant}' in precision.variants, or build another variant"
        )
    gate = manifest.need(PrecisionRecord).gate(key) if stage == "precision" else None
    if gate is not None and not gate.passed:
        raise SourceOnnxError(
            f"the {variant} ONNX of '{spec.name}' failed its accuracy gate in the '{stage}' stage; no engine "
            "is built for a variant that is not served (relax precision.budget if the drop is acceptable)"
        )
    if gate is not None and gate.tensorrt_compatible is False:
        raise SourceOnnxError(
            f"the {variant} ONNX of '{spec.name}' is recorded as not TensorRT-compatible (e.g. quantized "
            "constants outside Q/DQ pairs from --quantize-all); re-run `triton-bundle precision <spec> -v int8 -f` "
            "without --quantize-all to get TensorRT's explicit-quantization layout"
        )
    recorded = record.artifact(key)
    # A stage may record the directory that holds its model.onnx (and its reports).
    found = relocate(recorded / "model.onnx" if recorded.is_dir() else recorded, workdir)
    if found is None:
        raise SourceOnnxError(
            f"the {variant} ONNX recorded by '{stage}' ({record.artifact(key)}) is not on disk, nor under "
            f"{workdir}; re-run {command.replace('SPEC', '<spec>')}"
        )
    return found


def plan_profiles(
    spec: ModelSpec, manifest: Manifest, workdir: Path, onnx_path: Path, source: ProfileSource
) -> ProfilePlan:
    if spec.task == "text-generation":  # past length is a profile dim of its own (0 for a prefill)
        from triton_bundle.engine.profiles import decoder_plan

        return decoder_plan(spec.shapes, spec.generation.max_context, onnx_path)
    if source == "spec":
        return spec_plan(spec.shapes, onnx_path)
    checkpoint = relocate(
        manifest.require("export", "triton-bundle export <spec>").artifact("checkpoint") / "tokenizer.json",
        workdir,
    )
    texts = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, None).texts
    tokenizer = checkpoint or Path("tokenizer.json (not found beside the exported checkpoint)")
    return eval_data_plan(spec.shapes, onnx_path, token_lengths(texts, tokenizer))


def _timing_cache(spec: ModelSpec, workdir: Path) -> Path:
    return spec.resolve(spec.engine.timing_cache) or workdir / ENGINES_DIR / TIMING_CACHE_FILE


def _build_entry(result: EngineResult) -> EngineBuild:
    """What the manifest keeps of one build or ahead-of-time check."""
    plan = result.profile_plan
    entry = EngineBuild(
        mode=result.mode,
        passed=result.passed,
        source_onnx=str(result.source_onnx),
        profile_source=plan.source,
        profile=plan.profile,
        profile_notes=plan.notes,
        token_lengths=plan.token_lengths,
    )
    if result.engine is not None:
        engine = result.engine
        entry.builder, entry.tensorrt_version = engine.builder, engine.tensorrt_version
        entry.gpu_name, entry.compute_capability = engine.gpu_name, engine.compute_capability
        entry.layer_precisions = engine.layer_precisions
        entry.compute_layer_precisions = engine.compute_layer_precisions
    if result.aot is not None:
        aot = result.aot
        entry.builder, entry.tensorrt_version = "tensorrt_rtx", aot.tensorrt_rtx_version
        entry.unsupported_nodes = [n.describe() for n in aot.unsupported_nodes]
        entry.error = aot.error
        if aot.layer_precisions is not None:
            entry.compute_layer_precisions = aot.layer_precisions.compute_layers
    return entry


def _build_seconds(result: EngineResult) -> float | None:
    if result.engine is not None:
        return result.engine.build_seconds or 0.0
    return result.aot.build_seconds if result.aot is not None else None


def _record(spec: ModelSpec, workdir: Path, result: EngineResult) -> None:
    """Add this variant to the engine record, keeping what earlier (or concurrent) runs recorded for
    other variants: one read-modify-write under the manifest's lock."""
    key = result.variant if result.mode == "gpu" else f"{result.variant}_aot"
    with Manifest.locked(workdir, spec.name) as manifest:
        record = manifest.get(EngineRecord) or EngineRecord()
        record.artifacts[key] = result.directory.resolve()
        record.details[key] = _build_entry(result)
        seconds = _build_seconds(result)
        if seconds is not None:
            record.metrics[f"{key}_build_s"] = seconds
        record.passed = all(build.passed for build in record.details.values())
        manifest.record(record)


def build_variant(
    spec: ModelSpec,
    workdir: Path,
    variant: str,
    *,
    aot: bool = False,
    profiles: ProfileSource = "spec",
    force: bool = False,
    keep_plan: bool = False,
    spec_path: str = "<spec>",
) -> EngineResult:
    """Build (GPU) or check ahead of time (TensorRT-RTX) one variant and record it.

    An ahead-of-time check that fails is recorded and returned with passed=False; the caller decides
    whether that is fatal. A GPU build that fails raises.
    """
    workdir = Path(workdir)
    manifest = Manifest.load(workdir, spec.name)
    onnx_path = source_onnx(spec, manifest, workdir, variant)
    plan = plan_profiles(spec, manifest, workdir, onnx_path, profiles)
    options = BuildOptions.from_spec(spec.engine, _timing_cache(spec, workdir))
    if aot:
        target = workdir / ENGINES_DIR / AOT_DIR / variant
        check, plan_bytes = aot_check(onnx_path, plan.profile, options, precision=variant)
        # A re-check replaces the last report: it is a verdict, not an artifact anything serves.
        with atomic_path(target, force=True) as tmp:
            tmp.mkdir()
            dump_json(tmp / AOT_REPORT, check)
            if keep_plan and plan_bytes is not None:
                (tmp / PLAN_FILE).write_bytes(plan_bytes)
                dump_json(tmp / ENGINE_MANIFEST_NAME, check.engine_manifest(PLAN_FILE))
        result = EngineResult(
            variant=variant,
            mode="aot",
            passed=check.passed,
            directory=target,
            source_onnx=onnx_path,
            profile_plan=plan,
            aot=check,
        )
    else:
        target = workdir / ENGINES_DIR / variant
        check_overwrite(target / PLAN_FILE, force)
        custom_workdir = None if workdir == spec.default_workdir() else str(workdir)
        hint = container_command(spec_path, variant, spec.engine.triton_image_tag, custom_workdir)
        built = build_engine(onnx_path, plan.profile, options, variant, spec.engine.triton_image_tag, hint)
        with atomic_path(target, force=True) as tmp:
            tmp.mkdir()
            (tmp / PLAN_FILE).write_bytes(built.plan)
            dump_json(tmp / ENGINE_MANIFEST_NAME, built.manifest)
        if built.timing_cache and options.timing_cache is not None:
            write_bytes_atomic(options.timing_cache, built.timing_cache)
        result = EngineResult(
            variant=variant,
            mode="gpu",
            passed=True,
            directory=target,
            source_onnx=onnx_path,
            profile_plan=plan,
            engine=built.manifest,
        )
    _record(spec, workdir, result)
    return result


def available_variants(spec: ModelSpec, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """TensorRT-bound variants whose ONNX is recorded, and why each other one is left out."""
    manifest = Manifest.load(workdir, spec.name)
    ready: list[str] = []
    skipped: dict[str, str] = {}
    for variant in VARIANTS:
        try:
            source_onnx(spec, manifest, Path(workdir), variant)
        except BundleError as exc:  # missing stage, artifact or file: report it, build the rest
            skipped[variant] = str(exc).splitlines()[0]
        else:
            ready.append(variant)
    return ready, skipped
