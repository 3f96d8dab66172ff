"""`generate_repository`: spec + manifest -> a Triton model repository, written atomically and validated.

from triton_bundle.repository.generate import generate_repository
repo = generate_repository(spec, Path("artifacts/minilm-intent"), target="local", force=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.manifest import Manifest
from triton_bundle.repository.layout import write_repository
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.repository.pipelines import RepositoryPlan, plan_for
from triton_bundle.repository.record import RepositoryDetails, RepositoryRecord
from triton_bundle.repository.sources import RepositoryError, checkpoint_dir, resolve_sources
from triton_bundle.repository.validate import validate_repository
from triton_bundle.spec import ModelSpec

STAGE = "repository"
PYTHON_REQUIREMENTS_FILE = "python_backend_requirements.txt"

# The NVIDIA Triton image's Python has numpy but not these; the bundle's Python models need them.
_CONTAINER_PYTHON_PACKAGES = {
    "text": ["tokenizers>=0.20", "numpy"],
    "vision": ["pillow", "numpy"],
    "generation": ["tokenizers>=0.20", "numpy", "onnxruntime"],  # the decoder runs in the Python model
}


def default_repository_dir(spec: ModelSpec) -> Path:
    return Path("model_repository") / spec.name


def repository_options(spec: ModelSpec, target: str | None = None, **overrides: Any) -> RepositoryOptions:
    try:
        return RepositoryOptions.from_spec(spec, target=target, **overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise RepositoryError(f"invalid repository options for '{spec.name}': {problems}") from None


@dataclass(frozen=True)
class RepositoryResult:
    """What `generate` wrote: the repository and its manifest record (roles -> models, notes)."""

    path: Path
    record: RepositoryRecord


def _plan(spec: ModelSpec, options: RepositoryOptions, manifest: Manifest) -> RepositoryPlan:
    if options.target == "trtllm":
        from triton_bundle.repository.trtllm_configs import trtllm_plan

        return trtllm_plan(spec, checkpoint_dir(spec, manifest))
    sources = resolve_sources(spec, manifest, options)
    plan = plan_for(spec, options, sources)
    if options.target == "nvidia" and not any(v.engines for v in sources.variants):
        plan.notes.append(
            "no TensorRT engines recorded: the tensor model runs ONNX with onnxruntime on GPU; "
            "run `triton-bundle build SPEC` and regenerate to serve tensorrt_plan engines"
        )
    return plan


def _extra_files(spec: ModelSpec, options: RepositoryOptions) -> dict[str, str]:
    if options.target == "local":
        return {}
    kind = {"image-classification": "vision", "text-generation": "generation"}.get(spec.task, "text")
    return {
        PYTHON_REQUIREMENTS_FILE: (
            "# pip install these into the Triton image: the Python-backend models of this repository need them\n"
            + "\n".join(_CONTAINER_PYTHON_PACKAGES[kind])
            + "\n"
        )
    }


def _record(options: RepositoryOptions, plan: RepositoryPlan, out_dir: Path) -> RepositoryRecord:
    return RepositoryRecord(
        artifacts={"repository": out_dir},
        metrics={"max_batch_size": float(options.max_batch_size), "versions": float(len(options.variants))},
        details=RepositoryDetails(
            target=options.target,
            models=plan.model_names,
            versions={str(i): v for i, v in enumerate(options.variants, start=1)},
            padding=plan.padding,
            max_length=plan.sequence.max if plan.sequence else None,
            options=options.model_dump(mode="json"),
            notes=plan.notes,
        ),
    )


def generate(
    spec: ModelSpec,
    workdir: Path,
    out_dir: Path | None = None,
    target: str | None = None,
    force: bool = False,
    *,
    variants: Sequence[str] | None = None,
    **overrides: Any,
) -> RepositoryResult:
    """Write the model repository for `spec`, validate it and record it in the manifest.

    `variants` puts several precision variants side by side as versions 1..N of the tensor model;
    `overrides` set any RepositoryOptions field (padding, bucket_size, cuda_graphs, gpus, ...).
    """
    workdir = Path(workdir)
    options = repository_options(spec, target, variants=list(variants) if variants else None, **overrides)
    out_dir = Path(out_dir) if out_dir is not None else default_repository_dir(spec)
    check_overwrite(out_dir, force)
    manifest = Manifest.load(workdir, spec.name)
    plan = _plan(spec, options, manifest)
    with atomic_path(out_dir, force=force) as tmp:
        write_repository(tmp, plan.models, _extra_files(spec, options))
        tag = spec.engine.triton_image_tag if options.target == "nvidia" else None
        problems = [p for p in validate_repository(tmp, triton_image_tag=tag) if p.severity == "error"]
        if problems:
            listing = "\n".join(f"  - {p.model}: {p.message} (fix: {p.fix})" for p in problems)
            raise RepositoryError(f"the generated repository for '{spec.name}' does not validate:\n{listing}")
    record = manifest.record(_record(options, plan, out_dir.resolve()))
    manifest.save(workdir)
    return RepositoryResult(out_dir.resolve(), record)


def generate_repository(
    spec: ModelSpec,
    workdir: Path,
    out_dir: Path | None = None,
    target: str | None = None,
    force: bool = False,
    *,
    variants: Sequence[str] | None = None,
    **overrides: Any,
) -> Path:
    """`generate`, returning only the repository's absolute path."""
    return generate(spec, workdir, out_dir, target, force, variants=variants, **overrides).path
