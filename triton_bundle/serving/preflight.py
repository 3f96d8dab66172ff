"""Start-up check: refuse to serve TensorRT engines built for another TensorRT or another GPU.

A plan file deserialises only on the TensorRT version and the GPU compute capability it was built
for. Without this check Triton fails deep inside deserialisation ("Serialization assertion ... failed",
"The engine plan file is not compatible with this version of TensorRT"), far from the cause.

Two parts:
- pure: `check_repository(repository, runtime)` compares every `<model>/<version>/engine*.json`
  (triton_bundle/engine/manifest.py) with a `RuntimeInfo`; tests inject any RuntimeInfo on a CPU host;
- thin: `detect_runtime()` asks the `tensorrt` module (or libnvinfer) and `nvidia-smi` what is present.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from triton_bundle.engine.manifest import EngineManifest
from triton_bundle.errors import BundleError
from triton_bundle.manifest import sha256_file
from triton_bundle.variants import ENGINE_VARIANTS

# engine.json, or engine_<suffix>.json when one version holds plans for several compute capabilities
# (Triton's cc_model_filenames picks the one matching the GPU).
ENGINE_MANIFEST_GLOB = "engine*.json"
# The repository generator names each manifest after its plan: model.plan -> model.engine.json,
# model_sm90.plan -> model_sm90.engine.json (the JSON inside keeps the build's engine_file).
PLAN_MANIFEST_SUFFIX = ".engine.json"
REBUILD_HINT = (
    "rebuild the engines on this GPU type with the build image of the same release:\n"
    "    docker compose -f docker/compose.yaml --profile build run --rm build-engines\n"
    "  (it runs triton-bundle build SPEC --variant {variant} per variant, then "
    "triton-bundle repo generate SPEC --target nvidia)"
)
NO_TENSORRT = "no TensorRT found in this container to check against"
NO_GPU = "no NVIDIA GPU is visible to this container"
ENVIRONMENT_HINTS = {
    NO_TENSORRT: "serve engines from the triton image (it has libnvinfer), or state the version with "
    "--tensorrt-version / TRITON_BUNDLE_TENSORRT_VERSION",
    NO_GPU: "start the container with GPUs: compose reserves them (deploy.resources.reservations.devices), "
    "docker run --gpus all, Kubernetes requests nvidia.com/gpu",
}


class PreflightError(BundleError, RuntimeError):
    """Engines in the repository cannot run here, or what is here could not be determined."""


class EngineMismatchError(PreflightError):
    """At least one engine was built for another TensorRT version or GPU than the ones present."""


class RuntimeDetectionError(PreflightError):
    """Engines are present but the TensorRT version or the GPUs could not be detected."""


@dataclass(frozen=True)
class GpuInfo:
    compute_capability: str  # "9.0"
    name: str = "unknown GPU"


@dataclass(frozen=True)
class RuntimeInfo:
    """What the serving container and host offer. Tests build one by hand; detect_runtime() probes."""

    tensorrt_version: str | None
    gpus: tuple[GpuInfo, ...]
    tensorrt_source: str = "given"  # where the version came from, for messages
    triton_release: str | None = None  # YY.MM of the serving image, when known

    def describe(self) -> str:
        trt = f"TensorRT {self.tensorrt_version}" if self.tensorrt_version else "no TensorRT"
        gpus = (
            ", ".join(
                f"GPU {i}: {g.name} (compute capability {g.compute_capability})"
                for i, g in enumerate(self.gpus)
            )
            or "no GPU"
        )
        return f"{trt} ({self.tensorrt_source}); {gpus}"


@dataclass(frozen=True)
class EngineCheck:
    """One engine manifest compared with the runtime: problems refuse serving, notes do not."""

    manifest_path: Path
    manifest: EngineManifest | None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def built_for(self) -> str:
        m = self.manifest
        if m is None:
            return "unreadable manifest"
        gpu = f" ({m.gpu_name})" if m.gpu_name else ""
        cc = m.compute_capability or "unrecorded"
        return f"{m.builder} {m.tensorrt_version}, compute capability {cc}{gpu}, {m.precision}"


@dataclass(frozen=True)
class VersionCheck:
    """All engine manifests of one `<model>/<version>/` directory.

    Triton loads one plan per GPU from a version directory, so the directory is servable when every
    GPU present has at least one compatible engine (several engines: cc_model_filenames).
    """

    directory: Path
    engines: tuple[EngineCheck, ...]
    uncovered_gpus: tuple[GpuInfo, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.uncovered_gpus and all(e.manifest is not None for e in self.engines)


@dataclass
class PreflightReport:
    repository: Path
    runtime: RuntimeInfo | None
    versions: list[VersionCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.versions)

    @property
    def engine_count(self) -> int:
        return sum(len(v.engines) for v in self.versions)

    def failures(self) -> list[VersionCheck]:
        return [v for v in self.versions if not v.ok]


# ------------------------------------------------------------------------------------ pure comparison

_LEADING_VERSION = re.compile(r"^(\d+(?:\.\d+)*)")


def parse_version(text: str) -> tuple[int, ...]:
    """'10.13.3.9' -> (10, 13, 3, 9); the leading dotted numbers only ('10.8.0.post1' -> (10, 8, 0))."""
    match = _LEADING_VERSION.match(str(text).strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def decode_infer_lib_version(value: int) -> str:
    """libnvinfer's getInferLibVersion() integer as 'major.minor.patch'.

    TensorRT 10+ encodes major*10000 + minor*100 + patch (NV_TENSORRT_VERSION_INT); 8.x and older
    used major*1000 + minor*100 + patch.
    """
    if value >= 100_000:
        return f"{value // 10_000}.{value // 100 % 100}.{value % 100}"
    return f"{value // 1000}.{value // 100 % 10}.{value % 100}"


def _is_true(value: object) -> bool:
    return value is True or str(value).strip().lower() in {"1", "true", "yes", "on"}


def tensorrt_problem(built: str, present: str | None, version_compatible: bool) -> str | None:
    """Why an engine built with TensorRT `built` cannot load on TensorRT `present`, or None."""
    if present is None:
        return NO_TENSORRT
    b, p = parse_version(built), parse_version(present)
    if len(b) < 2 or len(p) < 2:
        return f"cannot compare TensorRT versions {built!r} and {present!r} (expected major.minor[.patch])"
    if version_compatible:
        # Version-compatible plans load on the same major version, this release or a later one.
        if b[0] != p[0] or p < b[: len(p)]:
            return (
                f"version-compatible engine from TensorRT {built} needs TensorRT {b[0]}.x at "
                f"{built} or later; {present} is present"
            )
        return None
    width = min(len(b), len(p), 3)  # major.minor.patch; the build number does not change the format
    if b[:width] != p[:width]:
        shown = ".".join(str(x) for x in b[:width]), ".".join(str(x) for x in p[:width])
        return f"TensorRT {shown[0]} != {shown[1]}: a plan loads only on the TensorRT version that built it"
    return None


def compute_capability_problem(built: str | None, gpu: GpuInfo, hardware_compatibility: str) -> str | None:
    """Why an engine built for compute capability `built` cannot run on `gpu`, or None."""
    level = (hardware_compatibility or "none").lower()
    present = parse_version(gpu.compute_capability)
    if level in {"ampere_plus", "ampere+"}:
        # Hardware-compatible plans run on any Ampere or later GPU (compute capability 8.0 and up).
        return (
            None
            if present >= (8, 0)
            else (
                f"{gpu.name} has compute capability {gpu.compute_capability}; an 'ampere_plus' "
                "engine needs 8.0 or later"
            )
        )
    if built is None:
        return "the manifest records no compute capability (an ahead-of-time build cannot be served)"
    if parse_version(built)[:2] != present[:2]:
        return (
            f"built for compute capability {built}, {gpu.name} has {gpu.compute_capability}: "
            "a plan runs only on the compute capability it was built for"
        )
    return None


def check_engine(
    manifest_path: Path, manifest: EngineManifest, runtime: RuntimeInfo, gpu: GpuInfo | None
) -> EngineCheck:
    """Compare one engine manifest with the runtime and one GPU (None: no GPU present)."""
    problems: list[str] = []
    notes: list[str] = []
    options = manifest.build_options
    if manifest.builder != "tensorrt":
        problems.append(
            f"built by {manifest.builder!r}, not datacenter TensorRT: Triton's tensorrt backend cannot "
            "load it (TensorRT-RTX builds are an ahead-of-time check only)"
        )
    plan = plan_path(manifest_path, manifest)
    if not plan.is_file():
        problems.append(f"the plan file {plan.name} it describes is missing beside it")
    elif manifest.engine_sha256 and sha256_file(plan) != manifest.engine_sha256:
        # Triton would fail deep inside deserialisation; say which file is damaged instead.
        problems.append(
            f"the plan file {plan} ({plan.stat().st_size} bytes) is corrupt or truncated: its sha256 differs "
            "from the one recorded when it was built"
        )
    trt = tensorrt_problem(
        manifest.tensorrt_version,
        runtime.tensorrt_version,
        _is_true(options.get("version_compatible", False)),
    )
    if trt:
        problems.append(trt)
    if gpu is None:
        problems.append(NO_GPU)
    else:
        level = str(options.get("hardware_compatibility") or "none")
        cc = compute_capability_problem(manifest.compute_capability, gpu, level)
        if cc:
            problems.append(cc)
        elif (
            level == "none"
            and manifest.gpu_name
            and gpu.name != "unknown GPU"
            and manifest.gpu_name != gpu.name
        ):
            notes.append(
                f"built on {manifest.gpu_name}, serving on {gpu.name} (same compute capability: "
                "loads, but TensorRT tuned its kernels for the other model)"
            )
    if (
        manifest.triton_image_tag
        and runtime.triton_release
        and manifest.triton_image_tag != runtime.triton_release
    ):
        notes.append(f"built for the {manifest.triton_image_tag} images, this is {runtime.triton_release}")
    return EngineCheck(manifest_path, manifest, tuple(problems), tuple(notes))


def find_engine_manifests(repository: Path) -> list[Path]:
    """Every `<model>/<version>/engine*.json` or `*.engine.json` in a Triton model repository, sorted."""
    found = {
        p
        for pattern in (ENGINE_MANIFEST_GLOB, f"*{PLAN_MANIFEST_SUFFIX}")
        for p in Path(repository).glob(f"*/*/{pattern}")
        if p.is_file()
    }
    return sorted(found)


def plan_path(manifest_path: Path, manifest: EngineManifest) -> Path:
    """The plan a manifest describes: `<stem>.plan` beside `<stem>.engine.json`, else its engine_file."""
    if manifest_path.name.endswith(PLAN_MANIFEST_SUFFIX):
        return manifest_path.with_name(manifest_path.name.removesuffix(PLAN_MANIFEST_SUFFIX) + ".plan")
    return manifest_path.parent / manifest.engine_file


def _read_manifest(path: Path) -> tuple[EngineManifest | None, str | None]:
    try:
        return EngineManifest.read(path), None
    except (OSError, ValueError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"unreadable engine manifest: {first}"


def check_version_dir(directory: Path, manifests: Sequence[Path], runtime: RuntimeInfo) -> VersionCheck:
    loaded = [(path, *_read_manifest(path)) for path in manifests]
    targets: list[GpuInfo | None] = list(runtime.gpus) or [None]
    engines: list[EngineCheck] = []
    uncovered: list[GpuInfo] = []
    per_gpu: dict[int, list[EngineCheck]] = {}
    for index, gpu in enumerate(targets):
        per_gpu[index] = [
            check_engine(path, manifest, runtime, gpu)
            if manifest is not None
            else EngineCheck(path, None, (error or "unreadable",))
            for path, manifest, error in loaded
        ]
        if not any(check.ok for check in per_gpu[index]):
            uncovered.append(gpu if gpu is not None else GpuInfo("none", "no GPU"))
    # Report each engine once: against the first GPU it fails on, else the first GPU.
    for position in range(len(loaded)):
        checks = [per_gpu[i][position] for i in per_gpu]
        engines.append(next((c for c in checks if not c.ok), checks[0]))
    return VersionCheck(directory, tuple(engines), tuple(uncovered))


def check_repository(repository: Path, runtime: RuntimeInfo) -> PreflightReport:
    """Compare every engine manifest in `repository` with `runtime`; reads files, detects nothing."""
    repository = Path(repository)
    if not repository.is_dir():
        raise PreflightError(f"model repository {repository} does not exist or is not a directory")
    by_dir: dict[Path, list[Path]] = {}
    for path in find_engine_manifests(repository):
        by_dir.setdefault(path.parent, []).append(path)
    report = PreflightReport(repository, runtime)
    report.versions = [check_version_dir(d, paths, runtime) for d, paths in sorted(by_dir.items())]
    return report


def mismatch_message(report: PreflightReport) -> str:
    """The refusal: each engine file, what it was built for, what is present, and how to rebuild."""
    failed = report.failures()
    count = sum(len(v.engines) for v in failed)
    runtime = report.runtime.describe() if report.runtime else "unknown"
    lines = [
        f"refusing to serve: {count} TensorRT engine(s) in {report.repository} cannot run here",
        f"  present:   {runtime}",
    ]
    variants: list[str] = []
    for version in failed:
        for engine in version.engines:
            lines.append(f"  - {engine.manifest_path}")
            lines.append(f"      built for: {engine.built_for}")
            lines += [f"      problem:   {p}" for p in engine.problems]
            if engine.manifest is not None:
                variants.append(engine.manifest.precision)
        for gpu in version.uncovered_gpus:
            if len(version.engines) > 1:
                lines.append(
                    f"      no engine in {version.directory} fits {gpu.name} "
                    f"(compute capability {gpu.compute_capability})"
                )
    problems = {p for version in failed for engine in version.engines for p in engine.problems}
    lines += [f"{ENVIRONMENT_HINTS[p]}" for p in sorted(problems & ENVIRONMENT_HINTS.keys())]
    if problems - ENVIRONMENT_HINTS.keys() or not problems:
        variant = next((v for v in variants if v in ENGINE_VARIANTS), "fp16|int8|fp32")
        lines.append(REBUILD_HINT.format(variant=variant))
    return "\n".join(lines)


def require_servable(report: PreflightReport) -> PreflightReport:
    """Raise EngineMismatchError when any engine cannot run here; return the report otherwise."""
    if not report.ok:
        raise EngineMismatchError(mismatch_message(report))
    return report


# ------------------------------------------------------------------------------------------ detection


def detect_tensorrt_version() -> tuple[str | None, str]:
    """(version, where it came from). The Triton image has libnvinfer but not always the Python module."""
    with contextlib.suppress(ImportError):
        import tensorrt  # type: ignore[import-not-found]

        return str(tensorrt.__version__), "python module tensorrt"
    for library in ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so"):
        try:
            handle = ctypes.CDLL(library)
        except OSError:
            continue
        get_version = handle.getInferLibVersion
        get_version.restype = ctypes.c_int32
        return decode_infer_lib_version(int(get_version())), library
    # NVIDIA's images also state the version they ship in their environment.
    for variable in ("TRT_VERSION", "TENSORRT_VERSION"):
        if os.environ.get(variable):
            return os.environ[variable], f"${variable} of the image"
    return None, "neither the tensorrt module nor libnvinfer was found"


def parse_nvidia_smi(text: str) -> tuple[GpuInfo, ...]:
    """Rows of `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader`."""
    gpus: list[GpuInfo] = []
    for row in text.splitlines():
        if not row.strip():
            continue
        name, _, cc = row.rpartition(",")
        gpus.append(GpuInfo(compute_capability=cc.strip(), name=name.strip() or "unknown GPU"))
    return tuple(gpus)


def detect_gpus(timeout_s: float = 20.0) -> tuple[GpuInfo, ...]:
    """The GPUs this container sees, from nvidia-smi (mounted by the NVIDIA container toolkit)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        result = subprocess.run(
            [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeDetectionError(f"nvidia-smi could not list the GPUs: {exc}") from None
    if result.returncode != 0:
        raise RuntimeDetectionError(
            f"nvidia-smi failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
        )
    return parse_nvidia_smi(result.stdout)


def detect_runtime(
    tensorrt_version: str | None = None, compute_capabilities: Iterable[str] | None = None
) -> RuntimeInfo:
    """Probe TensorRT and the GPUs; values given here replace the probes (operators, tests)."""
    if tensorrt_version:
        version, source = tensorrt_version, "given"
    else:
        version, source = detect_tensorrt_version()
    given = [cc.strip() for cc in compute_capabilities or () if cc.strip()]
    gpus = tuple(GpuInfo(cc, "given GPU") for cc in given) if given else detect_gpus()
    return RuntimeInfo(version, gpus, source, os.environ.get("TRITON_RELEASE") or None)


def run_preflight(repository: Path, runtime: RuntimeInfo | None = None) -> PreflightReport:
    """Check a repository before Triton serves it; raises EngineMismatchError when it must not start.

    Detection only happens when there are engines to check, so ONNX-only repositories pass on any host.
    """
    repository = Path(repository)
    if not repository.is_dir():
        raise PreflightError(f"model repository {repository} does not exist or is not a directory")
    if not find_engine_manifests(repository):
        return PreflightReport(repository, runtime)
    return require_servable(check_repository(repository, runtime or detect_runtime()))
