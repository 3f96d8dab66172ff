"""Image generation side by side, one command on one machine, the same seeds and classes:

    python benchmarks/images.py --spec examples/digits-gan/spec.yaml [--workdir artifacts/digits-gan] [--seconds 5]
    python benchmarks/images.py --spec examples/digits-diffusion/spec.yaml

Run after `make demo-image` / `make demo-diffusion` (it needs the trained, exported and gated model).
Diffusion: eager is diffusers' DDIMScheduler driving the PyTorch UNet (spec steps); the served pipeline
is the sampling ensemble; steps rows add served fp32 at each of diffusion.steps_table with the precision
stage's PSNR vs the most steps (benchmarks/diffusion_rows.py).
- eager: the generator's PyTorch forward + PNG encoding in this process, one image per call;
- served: the local Triton ensemble (seed -> latent -> generator -> PNG) over gRPC, one image per request,
  once per precision variant that passed its gate (fp32 / fp16 / int8), each in its own repository;
  each at 1 / 4 / 16 concurrent clients (threads, closed loop): images/s and latency p50 / p95.
Writes images.json under --out, prints the table (and the markdown rows the README quotes).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

CONCURRENCY = (1, 4, 16)
console = Console()


class Row(BaseModel):
    path: str  # eager | served
    precision: str
    concurrency: int
    images: int
    images_per_s: float
    p50_ms: float
    p95_ms: float


def closed_loop(
    make_call: Callable[[int], Callable[[int], None]], clients: int, seconds: float
) -> tuple[int, list[float]]:
    """`clients` threads call their own `call(seed)` until `seconds` pass; returns (images, latencies in s)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def worker(index: int) -> None:
        call, seed = make_call(index), index * 1_000_003
        while time.perf_counter() < stop:
            started = time.perf_counter()
            call(seed)
            latencies[index].append(time.perf_counter() - started)
            seed += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [x for per in latencies for x in per]
    return len(flat), flat


def _row(path: str, precision: str, clients: int, seconds: float, images: int, latencies: list[float]) -> Row:
    ms = np.array(latencies) * 1000
    return Row(path=path, precision=precision, concurrency=clients, images=images, images_per_s=images / seconds,
               p50_ms=float(np.percentile(ms, 50)), p95_ms=float(np.percentile(ms, 95)))  # fmt: skip


def eager_rows(spec, workdir: Path, seconds: float) -> list[Row]:
    import torch

    from triton_bundle.imagegen.export import load_generator
    from triton_bundle.imagegen.png import encode_png, to_uint8
    from triton_bundle.imagegen.seeds import latent_from_seed
    from triton_bundle.manifest import Manifest

    if spec.task == "diffusion":
        from benchmarks.diffusion_rows import eager_call_factory

        return _eager_loop(eager_call_factory(spec, workdir), seconds)
    generator, _ = load_generator(spec, Manifest.load(workdir, spec.name))
    classes = max(len(spec.labels or []), 1)

    def make_call(_index: int):
        def call(seed: int) -> None:
            latent = torch.from_numpy(latent_from_seed(seed, spec.image.latent_shape)[None])
            with torch.no_grad():
                image = generator(latent, torch.tensor([seed % classes])).numpy()
            encode_png(to_uint8(image, spec.image.value_range)[0])

        return call

    return _eager_loop(make_call, seconds)


def _eager_loop(make_call, seconds: float) -> list[Row]:
    rows = []
    for clients in CONCURRENCY:
        images, latencies = closed_loop(make_call, clients, seconds)
        rows.append(_row("eager", "fp32", clients, seconds, images, latencies))
    return rows


def served_rows(spec, workdir: Path, variant: str, seconds: float, extra=None) -> list[Row]:
    """`extra(server)`, if given, runs more measurements on the same server (diffusion's steps rows)."""
    from triton_bundle.client.images import ImageGenerator
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    out = workdir / "benchmark-repositories" / variant
    repository = generate_repository(spec, workdir, out_dir=out, force=True, variants=[variant])
    classes = max(len(spec.labels or []), 1)
    rows = []
    with LocalTriton(
        ServerConfig(repository=repository, log_file=out.parent / f"triton-{variant}.log")
    ) as server:

        def make_call(_index: int):
            client = ImageGenerator(f"grpc://{server.grpc_url}")
            # unconditional generators (no labels in the spec) take the seed alone
            return lambda seed: client.generate_arrays(
                spec.name, [seed], [seed % classes] if spec.labels else None
            )

        closed_loop(make_call, 2, 1.0)  # warm-up: sessions, threads, connections
        for clients in CONCURRENCY:
            images, latencies = closed_loop(make_call, clients, seconds)
            rows.append(_row("served", variant, clients, seconds, images, latencies))
        if extra is not None:
            extra(server)
    return rows


def passed_variants(spec, workdir: Path) -> list[str]:
    from triton_bundle.manifest import Manifest
    from triton_bundle.precision.record import PrecisionRecord

    record = Manifest.load(workdir, spec.name).get(PrecisionRecord)
    gates = record.details.gates if record else {}
    return ["fp32", *[v for v in ("fp16", "int8") if v in gates and gates[v].passed]]


def print_table(rows: list[Row]) -> None:
    table = Table(title="image generation: images/s (one image per request, closed loop)")
    for column in ("path", "precision", "clients", "images/s", "p50 ms", "p95 ms"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.path,
            r.precision,
            str(r.concurrency),
            f"{r.images_per_s:.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p95_ms:.1f}",
        )
    console.print(table)
    print("| path | precision | clients | images/s | p50 ms | p95 ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.path} | {r.precision} | {r.concurrency} | {r.images_per_s:.0f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} |"
        )


def main(
    spec_path: Path = typer.Option(Path("examples/digits-gan/spec.yaml"), "--spec"),
    workdir: Path | None = typer.Option(None, help="default: artifacts/<name>"),
    seconds: float = typer.Option(5.0, min=0.5, help="seconds per row"),
    out: Path = typer.Option(Path("reports/images"), help="where images.json goes"),
) -> None:
    from triton_bundle.atomic import write_text_atomic
    from triton_bundle.spec import load_spec

    spec = load_spec(spec_path)
    workdir = workdir or spec.default_workdir()
    rows, steps = eager_rows(spec, workdir, seconds), []
    for variant in passed_variants(spec, workdir):
        extra = None
        if spec.task == "diffusion" and variant == "fp32":
            from benchmarks.diffusion_rows import steps_rows

            def extra(server):
                steps.extend(steps_rows(spec, workdir, seconds, closed_loop, f"grpc://{server.grpc_url}"))

        rows += served_rows(spec, workdir, variant, seconds, extra)
    print_table(rows)
    if steps:
        from benchmarks.diffusion_rows import print_steps

        print_steps(steps)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"model": spec.name, "seconds_per_row": seconds, "rows": [r.model_dump() for r in rows]}
    payload["steps_rows"] = [r.model_dump() for r in steps]
    import json

    write_text_atomic(out / "images.json", json.dumps(payload, indent=2))
    console.print(f"wrote {out / 'images.json'}")


if __name__ == "__main__":
    typer.run(main)
