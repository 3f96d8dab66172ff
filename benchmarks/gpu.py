"""GPU rows, only where datacenter TensorRT and an NVIDIA GPU exist: PyTorch eager FP16 vs each TensorRT
engine in-process, and a GPU Triton through the same load generator when one is running.

In-process engines are the ones the engine stage recorded (`triton-bundle build SPEC` in NVIDIA's
TensorRT container, same YY.MM as the Triton image); they run through Polygraphy's TrtRunner, host
copies included. The served GPU rows need the NVIDIA Triton image (the pytriton wheel has only the
Python backend): start it (docker/ compose files) and pass its HTTP address with --gpu-triton-url.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.heldout import Heldout
from benchmarks.inputs import BenchInputs
from benchmarks.loadgen import latency_of, triton_endpoint
from benchmarks.results import Accuracy, Row
from benchmarks.served import LoadPlan, Reference, _accuracy, _empty_row, drive
from triton_bundle.engine.manifest import ENGINE_MANIFEST_NAME, EngineManifest
from triton_bundle.manifest import Manifest
from triton_bundle.repository import contract

Say = Callable[[str], None]


def unavailable_reason() -> str | None:
    """Why the in-process GPU rows cannot run here, or None when they can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return (
            "no datacenter TensorRT (`tensorrt` module) on this host; run the benchmark inside NVIDIA's "
            "TensorRT / Triton container on a GPU host for PyTorch-FP16 vs TensorRT rows"
        )
    from triton_bundle.engine.gpu import current_gpu

    if current_gpu() is None:
        return "TensorRT is installed but no NVIDIA GPU is visible (libcuda found no device)"
    try:
        import torch
    except ImportError:
        return "no torch in this environment"
    if not torch.cuda.is_available():
        return "torch has no CUDA here (the CPU wheel): PyTorch eager FP16 on the GPU cannot run"
    return None


def recorded_engines(workdir: Path, model: str) -> dict[str, Path]:
    """Variant -> plan file for every engine the engine stage built on a GPU."""
    record = Manifest.load(workdir, model).stages.get("engine")
    if record is None:
        return {}
    engines = {}
    for variant, directory in record.artifacts.items():
        manifest_path = Path(directory) / ENGINE_MANIFEST_NAME
        if not manifest_path.is_file():
            continue
        meta = EngineManifest.read(manifest_path)
        if meta.compute_capability is None:  # ahead-of-time check, not a runnable engine
            continue
        engines[variant] = Path(directory) / meta.engine_file
    return engines


def _timed(run: Callable[[], object], iterations_s: float, min_iterations: int = 5) -> list[float]:
    run()
    latencies = []
    deadline = time.perf_counter() + iterations_s
    while time.perf_counter() < deadline or len(latencies) < min_iterations:
        t0 = time.perf_counter()
        run()
        latencies.append(time.perf_counter() - t0)
    return latencies


def _row(name: str, variant: str, batch: int, latencies: list[float], accuracy: Accuracy | None) -> Row:
    latency = latency_of(latencies)
    return Row(
        section="gpu",
        name=name,
        variant=variant,
        batch_size=batch,
        sequence="real mix",
        throughput=round(batch * 1000.0 / latency.mean_ms, 2) if latency.mean_ms else 0.0,
        latency=latency,
        requests=len(latencies),
        accuracy=accuracy,
        settings={"latency_is": "per batch"},
    )


def _torch_rows(
    inputs: BenchInputs, heldout: Heldout, batches: Sequence[int], seconds: float, reference: Reference
) -> list[Row]:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(inputs.checkpoint).half().cuda().eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def forward(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).cuda() for k, v in feeds.items()}
            logits = model(**tensors).logits.float().cpu().numpy()
        return logits

    predicted = []
    for feeds in heldout.batches(max(batches), inputs.input_names):
        predicted += [labels[i] for i in forward(feeds).argmax(-1).tolist()]
    accuracy = _accuracy(predicted[: len(heldout.texts)], heldout, reference)
    rows = []
    for batch in batches:
        feeds_list = heldout.batches(batch, inputs.input_names)
        state = {"i": 0}

        def step(feeds_list=feeds_list, state=state) -> None:
            forward(feeds_list[state["i"] % len(feeds_list)])
            state["i"] += 1

        rows.append(
            _row(
                f"pytorch eager fp16 (cuda) b{batch}", "pytorch-fp16", batch, _timed(step, seconds), accuracy
            )
        )
    return rows


def _engine_rows(
    variant: str,
    plan: Path,
    inputs: BenchInputs,
    heldout: Heldout,
    batches: Sequence[int],
    seconds: float,
    reference: Reference,
    labels: Sequence[str],
) -> list[Row]:
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    rows = []
    with TrtRunner(EngineFromBytes(plan.read_bytes())) as runner:
        metadata = runner.get_input_metadata()

        def cast(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = {}
            for name, array in feeds.items():
                if name not in metadata:
                    continue
                dtype = metadata[name].dtype
                numpy_dtype = dtype.numpy() if hasattr(dtype, "numpy") else np.dtype(dtype)
                out[name] = array.astype(numpy_dtype)
            return out

        predicted = []
        for feeds in heldout.batches(max(batches), inputs.input_names):
            logits = next(iter(runner.infer(cast(feeds)).values()))
            predicted += [labels[i] for i in np.asarray(logits).argmax(-1).tolist()]
        accuracy = _accuracy(predicted[: len(heldout.texts)], heldout, reference)
        for batch in batches:
            feeds_list = [cast(f) for f in heldout.batches(batch, inputs.input_names)]
            state = {"i": 0}

            def step(feeds_list=feeds_list, state=state) -> None:
                runner.infer(feeds_list[state["i"] % len(feeds_list)])
                state["i"] += 1

            rows.append(
                _row(f"tensorrt {variant} b{batch}", f"trt-{variant}", batch, _timed(step, seconds), accuracy)
            )
    return rows


def run_gpu_section(
    inputs: BenchInputs,
    heldout: Heldout,
    batches: Sequence[int],
    seconds: float,
    reference: Reference,
    labels: Sequence[str],
    load: LoadPlan,
    triton_url: str | None,
    say: Say,
) -> tuple[list[Row], list[str]]:
    """The GPU rows; notes say what was left out and why."""
    rows: list[Row] = []
    notes: list[str] = []
    reason = unavailable_reason()
    if reason is None:
        rows += _torch_rows(inputs, heldout, batches, seconds, reference)
        engines = recorded_engines(inputs.workdir, inputs.spec.name)
        if not engines:
            notes.append(
                "no TensorRT engines recorded in the workdir; run `triton-bundle build SPEC` on this GPU"
            )
        for variant, plan in engines.items():
            try:
                rows += _engine_rows(variant, plan, inputs, heldout, batches, seconds, reference, labels)
            except Exception as exc:  # an engine built for another GPU / TensorRT: report, go on
                notes.append(f"tensorrt {variant}: could not run {plan}: {exc}")
    else:
        notes.append(reason)
    if triton_url:
        host, port = triton_url.replace("http://", "").rstrip("/").rsplit(":", 1)
        endpoint = triton_endpoint(host, int(port), contract.entry_model(inputs.spec.name, inputs.spec.task))
        from benchmarks.loadgen import label_all

        accuracy = _accuracy(label_all(endpoint, heldout.texts), heldout, reference)

        def make_row(concurrency: int) -> Row:
            row = _empty_row("gpu", f"triton (GPU) at {triton_url}", "served-gpu", concurrency)
            row.accuracy = accuracy
            return row

        rows += drive(
            endpoint,
            heldout.texts,
            load,
            {},
            make_row,
            stats_url=f"{host}:{port}",
            model=contract.entry_model(inputs.spec.name, inputs.spec.task),
        )
    for row in rows:
        say(f"{row.name:<40} {row.throughput:8.1f} seq/s  p50 {row.latency.p50_ms:7.2f} ms")
    return rows, notes
