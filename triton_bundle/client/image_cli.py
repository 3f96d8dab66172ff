"""`triton-bundle generate-image --seed 1 --label 7 --out seven.png`: images from a served generator.

One seed writes that image; several seeds write a grid (left to right, in the order given). The seeds,
labels and timing go to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from triton_bundle.client.cli import ProtocolOpt, SpecOpt, UrlOpt, _model_name, _server
from triton_bundle.client.errors import InvalidInputError
from triton_bundle.client.generate_cli import ModelOpt

MAX_SCALE = 64


def generate_image_command(
    seed: Annotated[list[int], typer.Option("--seed", help="one image per seed (repeatable)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write (a grid for several seeds)")],
    label: Annotated[
        list[int] | None,
        typer.Option("--label", "-l", help="class id: one for every seed, or one per seed (repeatable)"),
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="diffusion: denoising steps")] = None,
    scale: Annotated[int, typer.Option(min=1, max=MAX_SCALE, help="upscale the PNG (nearest)")] = 1,
    columns: Annotated[int, typer.Option(min=1, help="grid columns")] = 8,
    model: ModelOpt = None,
    spec: SpecOpt = None,
    url: UrlOpt = None,
    protocol: ProtocolOpt = None,
) -> None:
    """Generate images with a served image-generation / diffusion model and write a PNG."""
    from triton_bundle.atomic import atomic_path
    from triton_bundle.client.images import ImageGenerator
    from triton_bundle.imagegen.png import image_grid

    labels = list(label or [])
    if len(labels) not in (0, 1, len(seed)):
        raise InvalidInputError(
            f"--label: give one for every seed, or one per seed ({len(seed)}), got {len(labels)}"
        )
    address, chosen = _server(url, protocol, Path(spec) if spec else None)
    name = _model_name(model, Path(spec) if spec else None)
    client = ImageGenerator(address, chosen)
    result = client.generate_arrays(name, seed, labels[0] if len(labels) == 1 else (labels or None), steps)
    images = result.pil()
    picture = (
        images[0].resize((images[0].width * scale, images[0].height * scale))
        if len(images) == 1
        else image_grid(images, columns, scale)
    )
    with atomic_path(Path(out), force=True) as tmp:
        picture.save(tmp, format="PNG")
    typer.echo(
        f"{len(images)} image(s) from '{name}' (seeds {seed}) in {result.seconds * 1000:.0f} ms -> {out}"
    )
