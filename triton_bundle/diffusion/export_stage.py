"""The export stage for diffusion: UNet -> ONNX (dynamic batch) -> parity -> report.

Parity is proven twice: the UNet's output at several timesteps and batch sizes (max abs vs PyTorch), and
whole sampled images: the numpy DDIM loop the server runs, driving the ONNX UNet, against diffusers'
DDIMScheduler driving the PyTorch UNet, from the same seeds (PSNR >= image.min_parity_psnr_db).
The ONNX lands at `<workdir>/onnx/model.onnx` only when both hold.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.diffusion import unet as du
from triton_bundle.diffusion.ddim import sample
from triton_bundle.diffusion.train import gate_inputs
from triton_bundle.export.onnx_export import export_module, graph_dims
from triton_bundle.export.record import ExportDetails, ExportRecord, export_artifacts, parity_metrics
from triton_bundle.export.report import JSON_NAME, OutputParity, ParityReport, tolerance_failures
from triton_bundle.export.stage import (
    ONNX_DIR,
    ONNX_FILE,
    REJECTED_DIR,
    ExportResult,
    checkpoint_path,
    publish_or_reject,
)
from triton_bundle.imagegen.metrics import psnr
from triton_bundle.imagegen.png import to_uint8
from triton_bundle.imagegen.seeds import latents_for_seeds
from triton_bundle.manifest import Manifest
from triton_bundle.spec import ModelSpec

INPUT_NAMES = [du.SAMPLE, du.TIMESTEP, du.CLASS_LABELS]
AXES = {name: {0: "batch"} for name in [*INPUT_NAMES, du.NOISE]}
PARITY_BATCHES = (1, 3)


def unet_feeds(spec: ModelSpec, batch: int, timestep: int, num_classes: int) -> dict[str, np.ndarray]:
    """Seed-drawn samples at one timestep, classes cycling: real UNet inputs, reproducible."""
    seeds = list(range(1000 + timestep, 1000 + timestep + batch))
    return {
        du.SAMPLE: latents_for_seeds(seeds, spec.image.latent_shape),
        du.TIMESTEP: np.full((batch, 1), timestep, dtype=np.int64),
        du.CLASS_LABELS: (np.arange(batch, dtype=np.int64) % num_classes).reshape(batch, 1),
    }


def _unet_rows(spec, wrapper, session, num_classes) -> list[OutputParity]:
    rows = []
    for timestep in spec.diffusion.parity_timesteps:
        for batch in PARITY_BATCHES:
            feeds = unet_feeds(spec, batch, timestep, num_classes)
            with torch.no_grad():
                ref = wrapper(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES)).numpy()
            got = session.run([du.NOISE], feeds)[0]
            diff = np.abs(ref - got)
            max_abs = float(diff.max())
            rows.append(
                OutputParity(
                    case=f"t={timestep} batch={batch}",
                    output=du.NOISE,
                    shape=list(got.shape),
                    max_abs=max_abs,
                    max_rel=float((diff / np.maximum(np.abs(ref), 1e-6)).max()),
                    within_tolerance=max_abs <= spec.export.tolerances.max_abs,
                )
            )
    return rows


def image_parity(spec: ModelSpec, unet, scheduler, session, labels: list[str], steps: int) -> float:
    """PSNR (dB) of the served loop's images (numpy DDIM + ONNX UNet) vs diffusers' (PyTorch)."""
    seeds, classes = gate_inputs(spec, len(labels))
    noise = latents_for_seeds(seeds.tolist(), spec.image.latent_shape)
    reference = du.diffusers_sample(unet, scheduler, noise, classes, steps)
    served = sample(
        du.ort_unet_fn(session), du.ddim_schedule(scheduler), noise, classes, np.full(len(seeds), steps)
    )
    low_high = spec.image.value_range
    return psnr(to_uint8(reference, low_high), to_uint8(served, low_high))


def _verify(
    spec, unet, scheduler, wrapper, onnx_path: Path, exporter: str, labels
) -> tuple[ParityReport, float]:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rows = _unet_rows(spec, wrapper, session, len(labels))
    image_psnr = image_parity(spec, unet, scheduler, session, labels, spec.diffusion.steps)
    failures = tolerance_failures(rows, spec.export.tolerances.max_abs)
    if image_psnr < spec.image.min_parity_psnr_db:
        failures.append(
            f"sampled images differ from diffusers': PSNR {image_psnr:.1f} dB < {spec.image.min_parity_psnr_db:g} dB"
        )
    return ParityReport(
        onnx=str(onnx_path),
        exporter=exporter,
        agreement_kind="images",
        cases=[r.case for r in rows],
        outputs=rows,
        examples=len(spec.image.gate_seeds),
        tolerances=spec.export.tolerances,
        passed=not failures,
        failures=failures,
        notes=[
            f"images: {len(spec.image.gate_seeds)} gate seeds, {spec.diffusion.steps} DDIM steps, numpy loop + "
            f"ONNX UNet vs diffusers DDIMScheduler + PyTorch UNet: PSNR {image_psnr:.1f} dB "
            f"(min {spec.image.min_parity_psnr_db:g})"
        ],
    ), image_psnr


def export_diffusion(spec: ModelSpec, workdir: Path, force: bool = False) -> ExportResult:
    """Export the UNet (inputs sample, timestep, class_labels; dynamic batch) and prove parity."""
    workdir = Path(workdir)
    target = workdir / ONNX_DIR
    check_overwrite(target / ONNX_FILE, force)
    manifest = Manifest.load(workdir, spec.name)
    checkpoint = checkpoint_path(spec, manifest)
    unet, scheduler, labels = (
        du.load_unet(checkpoint),
        du.load_scheduler(checkpoint),
        du.load_labels(checkpoint),
    )
    wrapper = du.UNetForExport(unet).eval()
    # Batch 2 at a mid timestep: no dynamic dim of size 0 or 1 for the tracer to specialise.
    example = unet_feeds(spec, 2, spec.diffusion.num_train_timesteps // 2, len(labels))
    rejected = workdir / REJECTED_DIR
    workdir.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, force=True) as tmp, tempfile.TemporaryDirectory(dir=workdir) as scratch:
        raw = Path(scratch) / ONNX_FILE
        outcome = export_module(
            wrapper,
            {name: torch.from_numpy(example[name]) for name in INPUT_NAMES},
            raw,
            [du.NOISE],
            AXES,
            opset=spec.export.opset,
            exporter=spec.export.exporter,
            fallback=spec.export.fallback,
            external_threshold=int(spec.export.external_data_threshold_mb * 1024**2),
        )
        report, image_psnr = _verify(spec, unet, scheduler, wrapper, raw, outcome.exporter, labels)
        report.task, report.opset = spec.task, outcome.opset
        report.exporter_requested, report.exporter_attempts = spec.export.exporter, list(outcome.attempts)
        report.dynamic_axes = {k: {str(a): n for a, n in v.items()} for k, v in AXES.items()}
        report.external_data = outcome.external_data
        report.onnx = str(target / ONNX_FILE)
        publish_or_reject(report, Path(scratch), tmp, target, rejected, "UNet export", spec.name)
    shutil.rmtree(rejected, ignore_errors=True)
    record = _record(spec, workdir, manifest, checkpoint, outcome, report, image_psnr, labels)
    return ExportResult(
        onnx=(target / ONNX_FILE).resolve(),
        report=report,
        report_path=(target / JSON_NAME).resolve(),
        record=record,
    )


def _record(spec, workdir, manifest, checkpoint, outcome, report, image_psnr, labels) -> ExportRecord:
    onnx_file = (workdir / ONNX_DIR / ONNX_FILE).resolve()
    record = manifest.record(
        ExportRecord(
            artifacts=export_artifacts(workdir / ONNX_DIR, ONNX_FILE, checkpoint),
            # PSNR capped: identical images are infinitely close
            metrics=parity_metrics(report, image_psnr_db=min(image_psnr, 100.0)),
            details=ExportDetails(
                task=spec.task,
                modality="vision",  # the task registry's: a checkpoint directory, precision variants apply
                exporter=outcome.exporter,
                exporter_requested=spec.export.exporter,
                opset=outcome.opset,
                input_names=INPUT_NAMES,
                output_names=[du.NOISE],
                dynamic_axes=report.dynamic_axes,
                graph_inputs=graph_dims(onnx_file),
                graph_outputs=graph_dims(onnx_file, "output"),
                labels=labels,
                vae=None,  # pixel space: nothing to decode
                external_data=outcome.external_data is not None,
            ),
        )
    )
    manifest.save(workdir)
    return record
