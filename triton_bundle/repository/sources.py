"""What a repository is built from, read from the spec and the manifest (never guessed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from triton_bundle.engine.manifest import ENGINE_MANIFEST_NAME, EngineManifest
from triton_bundle.engine.record import EngineRecord
from triton_bundle.errors import BundleError
from triton_bundle.export.record import ExportRecord
from triton_bundle.manifest import Manifest
from triton_bundle.precision.record import PrecisionRecord
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.spec import ModelSpec
from triton_bundle.variants import REFERENCE

FALLBACK_SAMPLE_TEXT = "Hello, I would like some help with my order, please."


class RepositoryError(BundleError, ValueError):
    """The repository cannot be generated from these inputs; the message says what to change."""


class PrecisionGateError(RepositoryError):
    """A precision variant whose accuracy gate did not pass was asked for."""


@dataclass(frozen=True)
class EngineArtifact:
    plan: Path
    manifest: EngineManifest


@dataclass(frozen=True)
class VariantSource:
    variant: str
    onnx: Path
    engines: tuple[EngineArtifact, ...] = ()


@dataclass(frozen=True)
class ModelSources:
    checkpoint: Path | None
    labels: list[str] | None
    variants: tuple[VariantSource, ...]
    sample_texts: list[str] = field(default_factory=list)


def _export_onnx(manifest: Manifest) -> Path:
    return manifest.need(ExportRecord).artifact("onnx")


def _precision_onnx(manifest: Manifest, variant: str) -> Path:
    record = manifest.need(PrecisionRecord)
    gate = record.gate(variant)
    if gate is None or variant not in record.artifacts:
        raise PrecisionGateError(
            f"precision variant '{variant}' was not produced (have: {sorted(record.artifacts)}); "
            f"add it to precision.variants and run: triton-bundle precision SPEC"
        )
    if not gate.passed:
        raise PrecisionGateError(
            f"precision variant '{variant}' failed its accuracy gate ({gate.describe()}); it is not served. "
            "Serve fp32 or a variant that passed, or relax precision.budget if the drop is acceptable"
        )
    path = record.artifact(variant)
    return path / "model.onnx" if path.is_dir() else path


def _engines(manifest: Manifest, variant: str) -> tuple[EngineArtifact, ...]:
    """Engines the engine stage recorded for this variant: one directory, or one per compute capability."""
    record = manifest.get(EngineRecord)
    if record is None or variant not in record.artifacts:
        return ()
    build = record.build(variant)
    if build is not None and not build.passed:
        raise RepositoryError(
            f"the '{variant}' TensorRT engine did not pass its checks in the engine stage; rebuild it "
            "(triton-bundle build SPEC) or serve ONNX (--target cpu-container)"
        )
    root = record.artifact(variant)
    dirs = (
        [root]
        if (root / ENGINE_MANIFEST_NAME).is_file()
        else sorted(p.parent for p in root.glob(f"*/{ENGINE_MANIFEST_NAME}"))
    )
    engines = []
    for directory in dirs:
        meta = EngineManifest.read(directory / ENGINE_MANIFEST_NAME)
        plan = directory / meta.engine_file
        if not plan.is_file():
            raise RepositoryError(
                f"engine manifest {directory / ENGINE_MANIFEST_NAME} names {plan}, which is missing"
            )
        engines.append(EngineArtifact(plan=plan, manifest=meta))
    if not engines:
        raise RepositoryError(
            f"the engine stage recorded {root} for '{variant}' but it holds no {ENGINE_MANIFEST_NAME}"
        )
    return tuple(engines)


def checkpoint_dir(spec: ModelSpec, manifest: Manifest) -> Path | None:
    from triton_bundle.checkpoints import compressed_student

    student = compressed_student(spec, manifest)
    if student is not None:  # the export served it; its tokenizer and labels are the ones to ship
        return student
    if spec.source.path is not None:
        return spec.resolve(spec.source.path)
    for stage in ("export", "finetune"):
        record = manifest.stages.get(stage)
        if record is not None and "checkpoint" in record.artifacts:
            return record.artifact("checkpoint")
    return None


def labels_for(spec: ModelSpec, export: ExportRecord | None, checkpoint: Path | None) -> list[str] | None:
    """The spec's labels, else those the export recorded, else the checkpoint's id2label."""
    if spec.labels:
        return list(spec.labels)
    if export is not None and export.details.labels:
        return [str(label) for label in export.details.labels]
    config = checkpoint / "config.json" if checkpoint else None
    if config is not None and config.is_file():
        id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label") or {}
        if id2label:
            return [str(id2label[key]) for key in sorted(id2label, key=int)]
    return None


def sample_texts(spec: ModelSpec, limit: int = 64) -> list[str]:
    """Real held-out texts for warm-up requests (a fixed sentence if the eval file is not text)."""
    from triton_bundle.data import DataError, load_texts

    try:
        texts = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, None).texts
    except DataError:
        texts = []
    return [t for t in texts if t.strip()][:limit] or [FALLBACK_SAMPLE_TEXT]


def resolve_sources(spec: ModelSpec, manifest: Manifest, options: RepositoryOptions) -> ModelSources:
    variants = []
    for variant in options.variants:
        onnx = _export_onnx(manifest) if variant == REFERENCE else _precision_onnx(manifest, variant)
        if not onnx.is_file():
            raise RepositoryError(
                f"the manifest names {onnx} for '{variant}', but the file is missing; re-run its stage"
            )
        engines = _engines(manifest, variant) if options.target == "nvidia" else ()
        variants.append(VariantSource(variant=variant, onnx=onnx, engines=engines))
    checkpoint = checkpoint_dir(spec, manifest)
    text_tasks = {"text-classification", "token-classification", "feature-extraction"}
    return ModelSources(
        checkpoint=checkpoint,
        labels=labels_for(spec, manifest.get(ExportRecord), checkpoint),
        variants=tuple(variants),
        sample_texts=sample_texts(spec) if spec.task in text_tasks else [],
    )


@dataclass(frozen=True)
class TokenizerSource:
    tokenizer_json: str  # the fast tokenizer, serialised
    pad_id: int


def tokenizer_source(checkpoint: Path | None) -> TokenizerSource:
    """The checkpoint's fast tokenizer (tokenizer.json; converted with transformers when only a vocab ships)."""
    from tokenizers import Tokenizer

    if checkpoint is None or not checkpoint.is_dir():
        raise RepositoryError(
            f"text models need the checkpoint's tokenizer, but no checkpoint directory was found ({checkpoint}); "
            "set source.path in the spec or run: triton-bundle finetune SPEC"
        )
    path = checkpoint / "tokenizer.json"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        from transformers import AutoTokenizer

        from triton_bundle.hf import quiet_offline

        quiet_offline()
        fast = AutoTokenizer.from_pretrained(checkpoint, use_fast=True)
        if not getattr(fast, "is_fast", False):
            raise RepositoryError(
                f"{checkpoint}: no fast tokenizer (tokenizer.json) can be made for this model"
            )
        text = fast.backend_tokenizer.to_str()
    tokenizer = Tokenizer.from_str(text)
    pad_id = None
    padding = json.loads(text).get("padding") or {}
    if "pad_id" in padding:
        pad_id = int(padding["pad_id"])
    for token in ("[PAD]", "<pad>", "<|pad|>"):
        if pad_id is None and tokenizer.token_to_id(token) is not None:
            pad_id = int(tokenizer.token_to_id(token))
    return TokenizerSource(tokenizer_json=text, pad_id=pad_id or 0)
