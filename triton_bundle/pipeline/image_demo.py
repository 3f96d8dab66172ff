"""`triton-bundle demo` for an image-generation spec (examples/digits-gan): every stage once, locally.

train the generator on the digits -> export + image parity -> FP16 / INT8 gated on PSNR, SSIM and the
digit classifier (plus INT8 on every op, a deliberately bad variant the gate must reject) -> TensorRT-RTX
ahead-of-time check -> repository -> local Triton: the gate seeds' images over HTTP and gRPC compared
with PyTorch, a grid of digits written as PNG, a bad request refused while the server stays ready.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from rich.table import Table

from triton_bundle.atomic import write_text_atomic
from triton_bundle.net import port_or_free
from triton_bundle.pipeline.demo import _step, console
from triton_bundle.spec import ModelSpec

GRID_FILE = "digits-grid.png"
GRID_SEEDS_PER_DIGIT = 6
STEPS = 5


class ServedCheck(BaseModel):
    protocol: str
    images: int
    equal_to_pytorch: float  # share of images whose uint8 pixels equal PyTorch's exactly
    min_psnr_db: float  # vs PyTorch (inf: identical)
    bad_request_refused: str  # the server's message for an unknown class label
    ready_after: bool


class ImageDemoSummary(BaseModel):
    model: str
    workdir: Path
    train_seconds: float
    class_agreement: float | None
    onnx: Path
    parity_max_abs: float
    gates: dict[str, bool]
    gate_notes: dict[str, str]
    bad_variant: str
    tensorrt_aot: dict[str, str]
    repository: Path
    served: list[ServedCheck]
    grid_png: Path
    summary_json: Path
    seconds: float


def _precision(spec: ModelSpec, workdir: Path) -> tuple[dict[str, bool], dict[str, str], str]:
    from triton_bundle.precision.stage import make_variants

    bad_spec = spec.model_copy(deep=True)
    bad_spec.precision.quantize_all = True  # INT8 on every op: the gate must say no, and why
    bad = make_variants(bad_spec, workdir, ["int8"], force=True).reports["int8"]
    bad_text = f"INT8 on every op: {'PASSED (budget too loose?)' if bad.passed else 'rejected: ' + '; '.join(bad.gate.failures())}"
    console.print(bad_text)
    result = make_variants(spec, workdir, force=True)
    notes = {}
    for variant, report in result.reports.items():
        notes[variant] = report.notes[0]
        verdict = "[green]passed" if report.passed else "[red]rejected: " + "; ".join(report.gate.failures())
        console.print(f"{variant}: {verdict}[/] ({report.notes[0]})")
    return {v: r.passed for v, r in result.reports.items()}, notes, bad_text


def _aot(spec: ModelSpec, workdir: Path, gates: dict[str, bool]) -> dict[str, str]:
    out = {}
    for variant in ["fp32", *[v for v, ok in gates.items() if ok and v != "int8-dynamic"]]:
        try:
            from triton_bundle.engine.stage import build_variant

            check = build_variant(spec, workdir, variant, aot=True, force=True)
            out[variant] = check.aot.describe() if check.aot else "no ahead-of-time result"
        except Exception as exc:  # TensorRT-RTX is an optional extra: the demo reports, never stops on it
            out[variant] = f"skipped: {exc}"
        console.print(f"TensorRT-RTX ahead-of-time {variant}: {out[variant]}")
    return out


def _served(spec: ModelSpec, workdir: Path, server) -> list[ServedCheck]:
    from tritonclient.http import InferenceServerClient

    from triton_bundle.client.errors import InvalidInputError
    from triton_bundle.client.images import ImageGenerator
    from triton_bundle.imagegen.export import gate_inputs, load_generator
    from triton_bundle.imagegen.metrics import psnr_per_image
    from triton_bundle.imagegen.png import to_uint8
    from triton_bundle.imagegen.train import generate
    from triton_bundle.manifest import Manifest

    seeds = list(spec.image.gate_seeds)
    labels = gate_inputs(spec)["class_label"].reshape(-1).tolist()
    generator, _ = load_generator(spec, Manifest.load(workdir, spec.name))
    reference = to_uint8(generate(generator, seeds, labels, spec.image.latent_shape), spec.image.value_range)
    checks = []
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        client = ImageGenerator(f"{protocol}://{url}")
        batch = spec.repository.max_batch_size
        pixels = np.concatenate([
            client.generate_arrays(spec.name, seeds[i : i + batch], labels[i : i + batch]).pixels
            for i in range(0, len(seeds), batch)
        ])  # fmt: skip
        try:
            client.generate_arrays(spec.name, [1], [len(spec.labels)])
            refused = "NOT refused"
        except InvalidInputError as exc:
            refused = str(exc)
        ready = InferenceServerClient(server.http_url).is_server_ready()
        same = float(np.mean([np.array_equal(a, b) for a, b in zip(reference, pixels, strict=True)]))
        checks.append(ServedCheck(protocol=protocol, images=len(seeds), equal_to_pytorch=same,
                                  min_psnr_db=min(psnr_per_image(reference, pixels)), bad_request_refused=refused,
                                  ready_after=ready))  # fmt: skip
    return checks


def write_grid(spec: ModelSpec, url: str, path: Path) -> Path:
    """A grid of served digits: one column per class, GRID_SEEDS_PER_DIGIT rows (seeds 0..), scaled 4x."""
    from triton_bundle.client.images import ImageGenerator
    from triton_bundle.imagegen.png import image_grid

    classes = len(spec.labels or []) or 1
    seeds = [row * classes + c for row in range(GRID_SEEDS_PER_DIGIT) for c in range(classes)]
    client, images = ImageGenerator(url), []
    for i in range(0, len(seeds), spec.repository.max_batch_size):
        chunk = seeds[i : i + spec.repository.max_batch_size]
        images += client.generate_images(spec.name, chunk, [s % classes for s in chunk])
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, columns=classes, scale=4).save(path)
    return path.resolve()


def run_image_demo(spec: ModelSpec, workdir: Path, repository_dir: Path | None = None) -> ImageDemoSummary:
    from triton_bundle.export.stage import export_model
    from triton_bundle.finetune import finetune
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

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
    gates, notes, bad = _precision(spec, workdir)
    aot = _aot(spec, workdir, gates)
    _step(4, "Triton model repository: seed -> latent -> generator -> PNG", STEPS)
    repository = generate_repository(spec, workdir, out_dir=repository_dir or Path("model_repository") / spec.name,
                                     target="local", force=True)  # fmt: skip
    _step(5, "local Triton: served images vs PyTorch over HTTP and gRPC, a grid of digits", STEPS)
    host = spec.serving.host
    config = ServerConfig(
        repository=repository, log_file=workdir / "triton.log", host=host,
        http_port=port_or_free(host, spec.serving.http_port), grpc_port=port_or_free(host, spec.serving.grpc_port),
        metrics_port=port_or_free(host, spec.serving.metrics_port), ready_timeout_s=spec.serving.ready_timeout_s,
    )  # fmt: skip
    with LocalTriton(config) as server:
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
    table = Table(title=f"{summary.model}: image generation, end to end ({summary.seconds:.0f}s)")
    table.add_column("step")
    table.add_column("result")
    table.add_row(
        "train",
        f"{summary.train_seconds:.0f}s, classifier agrees with the asked digit on {summary.class_agreement:.0%}",
    )
    table.add_row("export parity", f"max |diff| {summary.parity_max_abs:.2e}")
    for variant, ok in summary.gates.items():
        table.add_row(f"gate {variant}", f"{'passed' if ok else 'rejected'}: {summary.gate_notes[variant]}")
    table.add_row("deliberately bad variant", summary.bad_variant)
    for variant, text in summary.tensorrt_aot.items():
        table.add_row(f"TensorRT-RTX AOT {variant}", text)
    for s in summary.served:
        table.add_row(
            f"served ({s.protocol})",
            f"{s.equal_to_pytorch:.0%} of {s.images} images equal PyTorch's pixels; unknown label -> "
            f"{s.bad_request_refused[:60]}...; ready after: {s.ready_after}",
        )
    table.add_row("digit grid", str(summary.grid_png))
    table.add_row("summary", str(summary.summary_json))
    console.print(table)
