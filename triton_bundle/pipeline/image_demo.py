"""`triton-bundle demo` for an image-generation spec (examples/digits-gan): every stage once, locally.

train the generator on the digits -> export + image parity -> FP16 / INT8 gated on PSNR, SSIM and the
digit classifier (plus INT8 on every op, a deliberately bad variant the gate must reject) -> TensorRT-RTX
ahead-of-time check -> repository -> local Triton: the gate seeds' images over HTTP and gRPC compared
with PyTorch, a grid of digits written as PNG, a bad request refused while the server stays ready.
"""

from __future__ import annotations

import time
from pathlib import Path

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

STEPS = 5


class ImageDemoSummary(ImageDemoSteps):
    class_agreement: float | None


def _served(spec: ModelSpec, workdir: Path, server):
    from triton_bundle.imagegen.export import gate_inputs, load_generator
    from triton_bundle.imagegen.png import to_uint8
    from triton_bundle.imagegen.train import generate
    from triton_bundle.manifest import Manifest

    seeds = list(spec.image.gate_seeds)
    labels = gate_inputs(spec)["class_label"].reshape(-1).tolist()
    generator, _ = load_generator(spec, Manifest.load(workdir, spec.name))
    reference = to_uint8(generate(generator, seeds, labels, spec.image.latent_shape), spec.image.value_range)
    unknown_label = len(spec.labels or [])
    return served_checks(
        spec, server, seeds, labels, reference, lambda c: c.generate_arrays(spec.name, [1], [unknown_label])
    )


def run_image_demo(spec: ModelSpec, workdir: Path, repository_dir: Path | None = None) -> ImageDemoSummary:
    from triton_bundle.export.stage import export_model
    from triton_bundle.finetune import finetune
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton

    started, workdir = time.perf_counter(), Path(workdir)
    _step(1, "train the class-conditional generator on the digits", STEPS)
    tuned = finetune(spec, workdir, force=True)
    console.print(f"{tuned.train_examples} images, {tuned.seconds:.0f}s; the digit classifier agrees with the "
                  f"asked class on {tuned.eval_accuracy:.0%} of the gate seeds' images")  # fmt: skip
    _step(2, "export (latent + class -> image, dynamic batch) + image parity with PyTorch", STEPS)
    exported = export_model(spec, workdir, force=True)
    worst = max(o.max_abs for o in exported.report.outputs)
    console.print(f"{len(exported.report.cases)} cases, max |diff| {worst:.2e}; {exported.report.notes[0]}")
    _step(3, "FP16 / INT8 behind PSNR, SSIM and digit-classifier gates", STEPS)
    gates, notes, bad = precision_gates(spec, workdir)
    aot = tensorrt_aot(spec, workdir, gates)
    _step(4, "Triton model repository: seed -> latent -> generator -> PNG", STEPS)
    repository = generate_repository(spec, workdir, out_dir=repository_dir or Path("model_repository") / spec.name,
                                     target="local", force=True)  # fmt: skip
    _step(5, "local Triton: served images vs PyTorch over HTTP and gRPC, a grid of digits", STEPS)
    with LocalTriton(demo_server_config(spec, repository, workdir / "triton.log")) as server:
        served = _served(spec, workdir, server)
        grid = write_grid(spec, f"grpc://{server.grpc_url}", workdir / GRID_FILE)
    summary = ImageDemoSummary(
        model=spec.name, workdir=workdir.resolve(), train_seconds=tuned.seconds, class_agreement=tuned.eval_accuracy,
        onnx=exported.onnx, parity_max_abs=worst, gates=gates, gate_notes=notes, bad_variant=bad, tensorrt_aot=aot,
        repository=repository, served=served, grid_png=grid, summary_json=(workdir / "summary.json").resolve(),
        seconds=time.perf_counter() - started,
    )  # fmt: skip
    write_text_atomic(workdir / "summary.json", summary.model_dump_json(indent=2))
    _print(summary)
    return summary


def _print(summary: ImageDemoSummary) -> None:
    print_summary(
        summary,
        "image generation",
        f"{summary.train_seconds:.0f}s, classifier agrees with the asked digit on {summary.class_agreement:.0%}",
        lambda s: (
            f"{s.equal_to_pytorch:.0%} of {s.images} images equal PyTorch's pixels; unknown label -> "
            f"{s.bad_request_refused[:60]}...; ready after: {s.ready_after}"
        ),
    )
