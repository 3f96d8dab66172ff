"""Diffusion rows for benchmarks/images.py: the eager PyTorch loop (diffusers' DDIMScheduler driving the
UNet, then PNG encoding) and the steps-vs-quality-vs-time rows of the served pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel


class StepsRow(BaseModel):
    steps: int
    psnr_db: float  # FP32 vs the most steps in diffusion.steps_table (precision stage), capped at 100
    class_agreement: float  # the digit classifier reads the asked class
    served_images_per_s: float  # served fp32, STEPS_CLIENTS concurrent clients
    served_p50_ms: float


STEPS_CLIENTS = 4


def eager_call_factory(spec, workdir: Path):
    """make_call for closed_loop: one image per call through diffusers' loop, the PyTorch UNet, PNG."""
    from triton_bundle.diffusion import unet as du
    from triton_bundle.imagegen.png import encode_png, to_uint8
    from triton_bundle.imagegen.seeds import latent_from_seed
    from triton_bundle.manifest import Manifest

    checkpoint = Manifest.load(workdir, spec.name).stages["export"].artifact("checkpoint")
    unet, classes = du.load_unet(checkpoint), len(du.load_labels(checkpoint))

    def make_call(_index: int):
        scheduler = du.load_scheduler(checkpoint)  # set_timesteps mutates it: one per client thread

        def call(seed: int) -> None:
            noise = latent_from_seed(seed, spec.image.latent_shape)[None]
            image = du.diffusers_sample(
                unet, scheduler, noise, np.array([seed % classes]), spec.diffusion.steps
            )
            encode_png(to_uint8(image, spec.image.value_range)[0])

        return call

    make_call(0)(0)  # warm-up: the first UNet call pays for torch's lazy initialisation
    return make_call


def steps_rows(spec, workdir: Path, seconds: float, closed_loop, server_url: str) -> list[StepsRow]:
    """Served fp32 at each of diffusion.steps_table, with the precision stage's quality for that count."""
    from triton_bundle.client.images import ImageGenerator
    from triton_bundle.manifest import Manifest
    from triton_bundle.precision.record import PrecisionRecord

    record = Manifest.load(workdir, spec.name).get(PrecisionRecord)
    quality = {r.steps: r.model_dump() for r in (record.details.steps_table if record else [])}
    classes = max(len(spec.labels or []), 1)
    rows = []
    for steps in sorted(set(spec.diffusion.steps_table)):

        def make_call(_index: int, steps=steps):
            client = ImageGenerator(server_url)
            return lambda seed: client.generate_arrays(spec.name, [seed], [seed % classes], steps=steps)

        images, latencies = closed_loop(make_call, STEPS_CLIENTS, seconds)
        q = quality.get(steps, {})
        rows.append(
            StepsRow(
                steps=steps,
                psnr_db=q.get("psnr_db", float("nan")),
                class_agreement=q.get("class_agreement", float("nan")),
                served_images_per_s=images / seconds,
                served_p50_ms=float(np.percentile(np.array(latencies) * 1000, 50)),
            )
        )
    return rows


def print_steps(rows: list[StepsRow]) -> None:
    print(
        f"| steps | PSNR dB vs {max(r.steps for r in rows)} steps | classifier agrees | served images/s "
        f"({STEPS_CLIENTS} clients) | p50 ms |\n|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r.steps} | {r.psnr_db:.1f} | {r.class_agreement:.0%} | {r.served_images_per_s:.1f} | {r.served_p50_ms:.0f} |"
        )
