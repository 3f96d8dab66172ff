"""Demo steps both image demos share (GAN: pipeline/image_demo.py, diffusion: pipeline/diffusion_demo.py).

The precision gates with the deliberately bad INT8-on-every-op variant, the TensorRT-RTX ahead-of-time
check of every gated variant, the served-vs-reference check over HTTP and gRPC (with one bad request the
server must refuse and survive), the grid of served digits, and the end-of-demo table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from rich.table import Table

from triton_bundle.pipeline.demo import console
from triton_bundle.spec import ModelSpec

GRID_FILE = "digits-grid.png"
GRID_SEEDS_PER_DIGIT = 6


class ServedCheck(BaseModel):
    protocol: str
    images: int
    equal_to_pytorch: float  # share of images whose uint8 pixels equal the PyTorch reference's exactly
    min_psnr_db: float  # vs the reference (inf: identical)
    bad_request_refused: str  # the server's message for the demo's bad request
    ready_after: bool


class ImageDemoSteps(BaseModel):
    """What every image demo reports; each demo's summary adds its own fields."""

    model: str
    workdir: Path
    train_seconds: float
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


def precision_gates(spec: ModelSpec, workdir: Path) -> tuple[dict[str, bool], dict[str, str], str]:
    """The spec's variants through their gates, after INT8 on every op (the gate must say no, and why)."""
    from triton_bundle.precision.stage import make_variants

    bad_spec = spec.model_copy(deep=True)
    bad_spec.precision.quantize_all = True
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


def tensorrt_aot(spec: ModelSpec, workdir: Path, gates: dict[str, bool]) -> dict[str, str]:
    """TensorRT-RTX ahead-of-time build of FP32 and every passed TensorRT-format variant."""
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


def served_checks(
    spec: ModelSpec,
    server,
    seeds: list[int],
    labels: list[int],
    reference: np.ndarray,
    bad_request: Callable[[object], object],
) -> list[ServedCheck]:
    """The seeds' images over HTTP and gRPC vs `reference` (uint8), then `bad_request(client)`, which the
    server must refuse while staying ready."""
    from tritonclient.http import InferenceServerClient

    from triton_bundle.client.errors import InvalidInputError
    from triton_bundle.client.images import ImageGenerator
    from triton_bundle.imagegen.metrics import psnr_per_image

    checks, batch = [], spec.repository.max_batch_size
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        client = ImageGenerator(f"{protocol}://{url}")
        pixels = np.concatenate([
            client.generate_arrays(spec.name, seeds[i : i + batch], labels[i : i + batch]).pixels
            for i in range(0, len(seeds), batch)
        ])  # fmt: skip
        try:
            bad_request(client)
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


def print_summary(
    summary: ImageDemoSteps, title: str, train: str, served: Callable[[ServedCheck], str]
) -> None:
    """The end-of-demo table; `train` and `served(check)` are the demo's own wording of those rows."""
    table = Table(title=f"{summary.model}: {title}, end to end ({summary.seconds:.0f}s)")
    table.add_column("step")
    table.add_column("result")
    table.add_row("train", train)
    table.add_row("export parity", f"max |diff| {summary.parity_max_abs:.2e}")
    for variant, ok in summary.gates.items():
        table.add_row(f"gate {variant}", f"{'passed' if ok else 'rejected'}: {summary.gate_notes[variant]}")
    table.add_row("deliberately bad variant", summary.bad_variant)
    for variant, text in summary.tensorrt_aot.items():
        table.add_row(f"TensorRT-RTX AOT {variant}", text)
    for check in summary.served:
        table.add_row(f"served ({check.protocol})", served(check))
    table.add_row("digit grid", str(summary.grid_png))
    table.add_row("summary", str(summary.summary_json))
    console.print(table)
