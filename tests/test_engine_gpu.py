"""GPU only: engines built with datacenter TensorRT on this GPU, their manifests, and their outputs
against ONNX Runtime on real sentences. Run on an NVIDIA host, in the TensorRT container (torch is
only needed for the demo's fine-tune and export, so its CPU build will do):

    docker run --rm --gpus all -v "$PWD":"$PWD" -w "$PWD" nvcr.io/nvidia/tensorrt:26.07-py3 bash -c \
      'pip install -q --break-system-packages torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu &&
       pip install -q --break-system-packages -e ".[dev,trt-rtx]" && python3 -m pytest -q -m gpu tests/test_engine_gpu.py'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_models import demo_variants, engine_workdir, tokenized

from triton_bundle.data import load_texts
from triton_bundle.engine.gpu import BuildGpu, current_gpu
from triton_bundle.engine.manifest import EngineManifest
from triton_bundle.engine.stage import VARIANTS, build_variant
from triton_bundle.manifest import Manifest, sha256_file

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# Label agreement with ONNX Runtime (FP32 on CPU) on 32 held-out sentences. FP32 engines use TF32
# matmuls by default; ONNX Runtime's own run of the INT8 Q/DQ graph agrees 0.99 on the whole set, and
# TensorRT's INT8 kernels round differently again.
MIN_AGREEMENT = {"fp32": 0.96, "fp16": 0.96, "int8": 0.9}


def _gpu() -> BuildGpu:
    gpu = current_gpu()
    if gpu is None:
        pytest.skip("no NVIDIA GPU visible to CUDA")
    return gpu


@pytest.fixture(scope="module")
def variants(demo_spec, demo_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    texts = load_texts(demo_spec.resolve(demo_spec.data.train), demo_spec.data.text_field, None).texts
    return demo_variants(demo_workdir, texts, tmp_path_factory.getbasetemp() / "engine-models")


@pytest.fixture(scope="module")
def workdir(demo_workdir: Path, variants: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return engine_workdir(demo_workdir, variants, tmp_path_factory.mktemp("engine-gpu"))


@pytest.fixture(scope="module")
def feeds(demo_spec, demo_workdir: Path) -> dict[str, np.ndarray]:
    checkpoint = Manifest.load(demo_workdir, demo_spec.name).stages["export"].artifact("checkpoint")
    texts = load_texts(demo_spec.resolve(demo_spec.data.eval), demo_spec.data.text_field, None).texts
    return tokenized(
        checkpoint, texts[: demo_spec.shapes.batch.max], max_length=demo_spec.shapes.sequence.max
    )


def _onnxruntime_logits(onnx_path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def test_datacenter_engine_records_what_it_was_built_for(demo_spec, workdir: Path) -> None:
    trt = pytest.importorskip("tensorrt", reason="datacenter TensorRT (NVIDIA container)")
    gpu = _gpu()
    first = build_variant(demo_spec, workdir, "fp16", force=True)
    manifest = EngineManifest.read(first.directory / "engine.json")
    assert manifest.builder == "tensorrt" and manifest.tensorrt_version == trt.__version__
    assert (manifest.gpu_name, manifest.compute_capability) == (gpu.name, gpu.compute_capability)
    assert manifest.layer_precisions_source == "engine_inspector"
    assert sum(manifest.layer_precisions.values()) > 0
    assert manifest.engine_sha256 == sha256_file(first.directory / "model.plan")
    assert manifest.triton_image_tag == demo_spec.engine.triton_image_tag
    assert (workdir / "engines" / "timing.cache").stat().st_size > 0
    # The second build of the same graph on the same GPU reuses the timing cache the first one saved.
    second = build_variant(demo_spec, workdir, "fp16", force=True)
    assert second.engine is not None and second.engine.build_options["timing_cache_reused"] is True
    record = Manifest.load(workdir, demo_spec.name).stages["engine"]
    assert record.artifact("fp16") == first.directory.resolve()


@pytest.mark.parametrize("variant", VARIANTS)
def test_datacenter_engine_agrees_with_onnxruntime(
    demo_spec, workdir: Path, variants: dict[str, Path], feeds: dict[str, np.ndarray], variant: str
) -> None:
    pytest.importorskip("tensorrt", reason="datacenter TensorRT (NVIDIA container)")
    _gpu()
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    result = build_variant(demo_spec, workdir, variant, force=True)
    plan = (result.directory / "model.plan").read_bytes()
    with TrtRunner(EngineFromBytes(plan)) as runner:
        got = np.asarray(runner.infer(feed_dict=feeds)["logits"], dtype=np.float32)
    want = _onnxruntime_logits(variants["fp32"], feeds)
    agreement = float((got.argmax(1) == want.argmax(1)).mean())
    assert agreement >= MIN_AGREEMENT[variant], (variant, agreement, float(np.abs(got - want).max()))


def _run_rtx(trt, plan: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Run a TensorRT-RTX plan with torch's CUDA memory (TensorRT-RTX compiles its kernels here, JIT)."""
    import torch

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    assert engine is not None, "TensorRT-RTX could not load its own plan on this GPU"
    context = engine.create_execution_context()
    inputs = {name: torch.from_numpy(value).cuda() for name, value in feeds.items()}
    for name, tensor in inputs.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    logits = torch.empty(tuple(context.get_tensor_shape("logits")), dtype=torch.float32, device="cuda")
    context.set_tensor_address("logits", logits.data_ptr())
    assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    return logits.cpu().numpy()


@pytest.mark.parametrize("variant", ["fp32", "fp16"])
def test_tensorrt_rtx_engine_runs_on_a_supported_gpu(
    demo_spec, workdir: Path, variants: dict[str, Path], feeds: dict[str, np.ndarray], variant: str
) -> None:
    trt = pytest.importorskip("tensorrt_rtx", reason="pip install -e '.[trt-rtx]'")
    torch = pytest.importorskip("torch")
    gpu = _gpu()
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here (needed to hold the engine's buffers)")
    if f"SM{gpu.compute_capability.replace('.', '')}" not in trt.ComputeCapability.__members__:
        pytest.skip(
            f"TensorRT for RTX does not target compute capability {gpu.compute_capability} ({gpu.name})"
        )
    result = build_variant(demo_spec, workdir, variant, aot=True, keep_plan=True)
    assert result.passed, result.aot.error if result.aot else ""
    got = _run_rtx(trt, (result.directory / "model.plan").read_bytes(), feeds)
    want = _onnxruntime_logits(variants["fp32"], feeds)
    assert float((got.argmax(1) == want.argmax(1)).mean()) >= MIN_AGREEMENT[variant]
