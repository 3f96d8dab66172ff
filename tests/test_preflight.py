"""The start-up check that refuses engines built for another TensorRT or GPU (CPU: injected runtimes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from triton_bundle.engine.manifest import ENGINE_MANIFEST_NAME, EngineManifest, ProfileDims
from triton_bundle.errors import BundleError
from triton_bundle.serving.preflight import (
    EngineMismatchError,
    GpuInfo,
    PreflightError,
    RuntimeInfo,
    check_repository,
    decode_infer_lib_version,
    detect_gpus,
    detect_runtime,
    parse_nvidia_smi,
    parse_version,
    run_preflight,
    tensorrt_problem,
)

H100 = GpuInfo("9.0", "NVIDIA H100 80GB HBM3")
L4 = GpuInfo("8.9", "NVIDIA L4")
T4 = GpuInfo("7.5", "Tesla T4")
TRT = "10.13.3.9"


def _manifest(**overrides: object) -> EngineManifest:
    fields: dict[str, object] = {
        "builder": "tensorrt",
        "tensorrt_version": TRT,
        "gpu_name": H100.name,
        "compute_capability": "9.0",
        "precision": "fp16",
        "profiles": [ProfileDims(shapes={"input_ids": ([1, 1], [8, 32], [32, 128])})],
        "source_onnx": "/workspace/artifacts/minilm-intent/precision/fp16/model.onnx",
        "source_onnx_sha256": "0" * 64,
        "triton_image_tag": "25.10",
    }
    fields.update(overrides)
    return EngineManifest.model_validate(fields)


def _write_engine(
    repo: Path,
    model: str = "minilm-intent_model",
    version: str = "1",
    name: str = ENGINE_MANIFEST_NAME,
    plan: bool = True,
    **overrides: object,
) -> Path:
    manifest = _manifest(**overrides)
    directory = repo / model / version
    directory.mkdir(parents=True, exist_ok=True)
    if plan:
        (directory / manifest.engine_file).write_bytes(b"not a real plan; preflight never opens it")
    path = directory / name
    path.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return path


def _runtime(trt: str | None = TRT, *gpus: GpuInfo) -> RuntimeInfo:
    return RuntimeInfo(trt, gpus or (H100,), "test", "25.10")


# ------------------------------------------------------------------------------- pure comparisons


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.13.3.9", (10, 13, 3, 9)), ("10.8", (10, 8)), ("10.8.0.post1", (10, 8, 0)), ("x", ())],
)
def test_parse_version(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(101303, "10.13.3"), (100000, "10.0.0"), (8601, "8.6.1"), (110002, "11.0.2")]
)
def test_decode_infer_lib_version_both_encodings(value: int, expected: str) -> None:
    assert decode_infer_lib_version(value) == expected


def test_tensorrt_patch_and_build_numbers() -> None:
    assert tensorrt_problem("10.13.3.9", "10.13.3", False) is None  # build number not compared
    assert tensorrt_problem("10.13.3", "10.13.2.6", False) is not None
    assert tensorrt_problem("10.13", "10.13.2", False) is None  # only major.minor recorded
    assert "10.8.0 != 10.13.3" in (tensorrt_problem("10.8.0.43", "10.13.3.9", False) or "")


def test_version_compatible_engine_runs_on_later_same_major() -> None:
    assert tensorrt_problem("10.8.0", "10.13.3", True) is None
    assert tensorrt_problem("10.13.3", "10.8.0", True) is not None  # older runtime
    assert tensorrt_problem("10.8.0", "11.0.0", True) is not None  # other major


def test_parse_nvidia_smi_names_with_commas() -> None:
    gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\nNVIDIA A100-SXM4-40GB, 8.0\n\n")
    assert gpus == (H100, GpuInfo("8.0", "NVIDIA A100-SXM4-40GB"))
    assert parse_nvidia_smi("Weird, Name, 8.9")[0] == GpuInfo("8.9", "Weird, Name")


# ------------------------------------------------------------------------------- repository checks


def test_matching_engine_passes_and_reports_it(tmp_path: Path) -> None:
    _write_engine(tmp_path)
    report = run_preflight(tmp_path, _runtime())
    assert report.ok and report.engine_count == 1
    assert report.versions[0].engines[0].notes == ()


def test_repository_without_engines_passes_without_detecting(tmp_path: Path) -> None:
    (tmp_path / "minilm-intent_tokenizer" / "1").mkdir(parents=True)
    # runtime=None would probe the host; with no engines it must not need to.
    report = run_preflight(tmp_path)
    assert report.ok and report.engine_count == 0 and report.runtime is None


def test_tensorrt_mismatch_names_engine_built_for_present_and_fix(tmp_path: Path) -> None:
    path = _write_engine(tmp_path, tensorrt_version="10.8.0.43", precision="int8")
    with pytest.raises(EngineMismatchError) as info:
        run_preflight(tmp_path, _runtime("10.13.3.9"))
    message = str(info.value)
    assert isinstance(info.value, BundleError)
    assert str(path) in message
    assert "tensorrt 10.8.0.43" in message  # built for
    assert "TensorRT 10.13.3.9" in message  # present
    assert "10.8.0 != 10.13.3" in message
    assert "build-engines" in message and "--variant int8" in message  # how to rebuild


def test_compute_capability_mismatch_is_refused(tmp_path: Path) -> None:
    _write_engine(tmp_path, compute_capability="8.9", gpu_name=L4.name)
    with pytest.raises(EngineMismatchError, match=r"built for compute capability 8\.9.*H100.*9\.0"):
        run_preflight(tmp_path, _runtime(TRT, H100))


def test_same_compute_capability_other_gpu_model_is_a_note(tmp_path: Path) -> None:
    _write_engine(tmp_path, gpu_name="NVIDIA H100 PCIe")
    report = run_preflight(tmp_path, _runtime())
    assert report.ok
    assert "H100 PCIe" in report.versions[0].engines[0].notes[0]


def test_ampere_plus_engine_runs_on_later_gpus_but_not_turing(tmp_path: Path) -> None:
    _write_engine(tmp_path, compute_capability="8.0", build_options={"hardware_compatibility": "ampere_plus"})
    assert run_preflight(tmp_path, _runtime(TRT, H100, L4)).ok
    with pytest.raises(EngineMismatchError, match=r"8\.0 or later"):
        run_preflight(tmp_path, _runtime(TRT, T4))


def test_every_gpu_must_fit(tmp_path: Path) -> None:
    _write_engine(tmp_path)
    with pytest.raises(EngineMismatchError, match=r"NVIDIA L4 has 8\.9"):
        run_preflight(tmp_path, _runtime(TRT, H100, L4))


def test_one_engine_per_compute_capability_covers_mixed_gpus(tmp_path: Path) -> None:
    _write_engine(tmp_path, name="engine_sm90.json", engine_file="model_sm90.plan")
    _write_engine(
        tmp_path,
        name="engine_sm89.json",
        engine_file="model_sm89.plan",
        compute_capability="8.9",
        gpu_name=L4.name,
    )
    report = run_preflight(tmp_path, _runtime(TRT, H100, L4))
    assert report.ok and report.engine_count == 2
    with pytest.raises(EngineMismatchError, match=r"no engine in .* fits Tesla T4"):
        run_preflight(tmp_path, _runtime(TRT, H100, T4))


def test_missing_plan_rtx_builds_and_no_gpu_are_refused(tmp_path: Path) -> None:
    _write_engine(tmp_path, model="a", plan=False)
    _write_engine(tmp_path, model="b", builder="tensorrt_rtx", compute_capability=None)
    report = check_repository(tmp_path, RuntimeInfo(TRT, ()))
    problems = {v.directory.parent.name: " ".join(v.engines[0].problems) for v in report.versions}
    assert "model.plan it describes is missing" in problems["a"]
    assert "'tensorrt_rtx'" in problems["b"]
    assert "no NVIDIA GPU is visible" in problems["a"]
    with_gpu = check_repository(tmp_path, _runtime()).versions[1].engines[0].problems
    assert any("no compute capability" in p for p in with_gpu)


def test_no_tensorrt_or_gpu_present_is_refused_with_the_right_hint(tmp_path: Path) -> None:
    _write_engine(tmp_path)
    with pytest.raises(EngineMismatchError, match="no TensorRT found") as info:
        run_preflight(tmp_path, _runtime(None))
    # The engine is fine; the container is wrong: no rebuild advice.
    assert "TRITON_BUNDLE_TENSORRT_VERSION" in str(info.value) and "build-engines" not in str(info.value)
    with pytest.raises(EngineMismatchError, match="no NVIDIA GPU is visible") as info:
        run_preflight(tmp_path, RuntimeInfo(TRT, ()))
    assert "--gpus all" in str(info.value) and "build-engines" not in str(info.value)


def test_unreadable_manifest_is_refused(tmp_path: Path) -> None:
    path = _write_engine(tmp_path)
    path.write_text('{"builder": "tensorrt"}', encoding="utf-8")
    with pytest.raises(EngineMismatchError, match="unreadable engine manifest"):
        run_preflight(tmp_path, _runtime())


def test_missing_repository_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="does not exist"):
        run_preflight(tmp_path / "nope", _runtime())


def test_release_mismatch_is_a_note(tmp_path: Path) -> None:
    _write_engine(tmp_path, triton_image_tag="25.09")
    report = run_preflight(tmp_path, _runtime())
    assert report.ok and "25.09" in report.versions[0].engines[0].notes[0]


def test_tensorrt_detection_falls_back_to_the_image_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from triton_bundle.serving import preflight

    def no_library(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    monkeypatch.delenv("TENSORRT_VERSION", raising=False)
    monkeypatch.setenv("TRT_VERSION", "10.13.3.9")
    assert preflight.detect_tensorrt_version() == ("10.13.3.9", "$TRT_VERSION of the image")
    monkeypatch.delenv("TRT_VERSION")
    version, reason = preflight.detect_tensorrt_version()
    assert version is None and "libnvinfer" in reason


def test_given_values_replace_probes() -> None:
    runtime = detect_runtime("10.13.3.9", ["9.0", "8.9"])
    assert runtime.tensorrt_version == "10.13.3.9" and runtime.tensorrt_source == "given"
    assert [g.compute_capability for g in runtime.gpus] == ["9.0", "8.9"]


# ------------------------------------------------------------------------------------------- CLI


def _cli(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triton_bundle.serving.preflight_cli", "--repository", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_cli_passes_and_refuses_with_exit_codes(tmp_path: Path) -> None:
    _write_engine(tmp_path)
    ok = _cli(tmp_path, "--tensorrt-version", TRT, "--compute-capability", "9.0")
    assert ok.returncode == 0, ok.stderr
    assert "preflight passed" in ok.stderr
    refused = _cli(
        tmp_path,
        env={"TRITON_BUNDLE_TENSORRT_VERSION": "10.8.0", "TRITON_BUNDLE_COMPUTE_CAPABILITY": "9.0"},
    )
    assert refused.returncode == 2
    assert "refusing to serve" in refused.stderr and "Traceback" not in refused.stderr


def test_cli_empty_and_missing_repository(tmp_path: Path) -> None:
    empty = _cli(tmp_path)
    assert empty.returncode == 0 and "no TensorRT engines" in empty.stderr
    missing = _cli(tmp_path / "nope")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


# ------------------------------------------------------------------------------------------- GPU


def test_detects_the_real_gpu() -> None:
    # Needs a GPU but not TensorRT, so not marked `gpu` (that marker also requires the tensorrt module).
    gpus = detect_gpus()
    if not gpus:
        pytest.skip("no NVIDIA GPU visible (nvidia-smi absent or lists none)")
    for gpu in gpus:
        assert len(parse_version(gpu.compute_capability)) == 2, gpu
        assert gpu.name and gpu.name != "unknown GPU"
