"""`triton-bundle demo` for a diffusion spec (examples/digits-diffusion): every stage once, locally.

train the class-conditional UNet on the digits -> export + parity (UNet per timestep, sampled images vs
diffusers) -> FP16 / INT8 gated on the sampled images (plus INT8 on every op, the bad variant the gate
must reject) and the quality-vs-steps table -> TensorRT-RTX ahead-of-time check of the UNet ->
repository -> local Triton: the gate seeds' images over HTTP and gRPC vs diffusers', a grid of digits,
a bad request refused while the server stays ready.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from triton_bundle.atomic import write_text_atomic
from triton_bundle.pipeline.demo import _step, console, demo_server_config
from triton_bundle.pipeline.image_steps import (
    GRID_FILE,
    ImageDemoSteps,
    precision_gates,
    print_summary,
    served_checks,
    tensorrt_aot,
    write_grid,
)
from triton_bundle.spec import ModelSpec


class DiffusionDemoSummary(ImageDemoSteps):
    class_agreement: float
    steps_table: list[dict[str, float]]


def _served(spec: ModelSpec, workdir: Path, server):
    from triton_bundle.diffusion import unet as du
    from triton_bundle.diffusion.train import gate_inputs
    from triton_bundle.imagegen.png import to_uint8
    from triton_bundle.imagegen.seeds import latents_for_seeds
    from triton_bundle.manifest import Manifest

    checkpoint = Manifest.load(workdir, spec.name).stages["export"].artifact("checkpoint")
    seeds, labels = (a.tolist() for a in gate_inputs(spec, len(du.load_labels(checkpoint))))
    noise = latents_for_seeds(seeds, spec.image.latent_shape)
    unet, scheduler = du.load_unet(checkpoint), du.load_scheduler(checkpoint)
    reference = to_uint8(du.diffusers_sample(unet, scheduler, noise, np.array(labels), spec.diffusion.steps))
    too_many = spec.diffusion.max_steps + 1
    return served_checks(
        spec,
        server,
        seeds,
        labels,
        reference,
        lambda c: c.generate_arrays(spec.name, [1], [1], steps=too_many),
    )


def _steps_table(spec: ModelSpec, workdir: Path) -> list[dict[str, float]]:
    from triton_bundle.manifest import Manifest
    from triton_bundle.precision.record import PrecisionRecord

    steps_table = Manifest.load(workdir, spec.name).need(PrecisionRecord).details.steps_table
    rows = [r.model_dump() for r in steps_table]
    for r in rows:
        console.print(
            f"{r['steps']:>3} steps: PSNR {r['psnr_db']:.1f} dB vs {rows[-1]['steps']} steps, classifier "
            f"{r['class_agreement']:.0%}, {r['seconds_per_image'] * 1000:.1f} ms/image"
        )
    return rows


def run_diffusion_demo(
    spec: ModelSpec, workdir: Path, repository_dir: Path | None = None
) -> DiffusionDemoSummary:
    from triton_bundle.export.stage import export_model
    from triton_bundle.finetune import finetune
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton

    started, workdir = time.perf_counter(), Path(workdir)
    _step(1, "train the class-conditional UNet (diffusers UNet2DModel, DDPM noise) on the digits")
    tuned = finetune(spec, workdir, force=True)
    console.print(f"{tuned.train_examples} images, {tuned.seconds:.0f}s, loss {tuned.final_loss:.4f}; the digit "
                  f"classifier reads the asked class in {tuned.class_agreement:.0%} of the gate seeds' samples")  # fmt: skip
    _step(
        2, "export the UNet (sample, timestep, class_labels; dynamic batch) + parity with PyTorch / diffusers"
    )
    exported = export_model(spec, workdir, force=True)
    worst = max(o.max_abs for o in exported.report.outputs)
    console.print(f"{len(exported.report.cases)} cases, max |diff| {worst:.2e}; {exported.report.notes[0]}")
    _step(3, "FP16 / INT8 UNets behind PSNR, SSIM and digit-classifier gates; quality vs steps")
    gates, notes, bad = precision_gates(spec, workdir)
    steps = _steps_table(spec, workdir)
    aot = tensorrt_aot(spec, workdir, gates)
    _step(4, "Triton model repository: seed -> DDIM loop (BLS to the UNet) -> PNG")
    repository = generate_repository(spec, workdir, out_dir=repository_dir or Path("model_repository") / spec.name,
                                     target="local", force=True)  # fmt: skip
    _step(5, "local Triton: served images vs diffusers over HTTP and gRPC, a grid of digits")
    with LocalTriton(demo_server_config(spec, repository, workdir / "triton.log")) as server:
        served = _served(spec, workdir, server)
        grid = write_grid(spec, f"grpc://{server.grpc_url}", workdir / GRID_FILE)
    summary = DiffusionDemoSummary(
        model=spec.name, workdir=workdir.resolve(), train_seconds=tuned.seconds, class_agreement=tuned.class_agreement,
        onnx=exported.onnx, parity_max_abs=worst, gates=gates, gate_notes=notes, bad_variant=bad, steps_table=steps,
        tensorrt_aot=aot, repository=repository, served=served, grid_png=grid,
        summary_json=(workdir / "summary.json").resolve(), seconds=time.perf_counter() - started,
    )  # fmt: skip
    write_text_atomic(workdir / "summary.json", summary.model_dump_json(indent=2))
    _print(summary)
    return summary


def _print(summary: DiffusionDemoSummary) -> None:
    print_summary(
        summary,
        "diffusion",
        f"{summary.train_seconds:.0f}s, classifier reads the asked digit in {summary.class_agreement:.0%}",
        lambda s: (
            f"{s.equal_to_pytorch:.0%} of {s.images} images equal diffusers' pixels (worst PSNR "
            f"{s.min_psnr_db:.1f}); steps out of range -> {s.bad_request_refused[:60]}...; ready after: {s.ready_after}"
        ),
    )
