"""Float images -> uint8 -> PNG bytes, and a grid of images for the README / CLI."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image


def to_uint8(
    images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0), layout: str = "NCHW"
) -> np.ndarray:
    """[B, C, H, W] (or NHWC) floats in value_range -> uint8 [B, H, W, C], rounded, clipped."""
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images [B, C, H, W], got shape {images.shape}")
    low, high = value_range
    scaled = (images.astype(np.float32) - low) / (high - low) * 255.0
    pixels = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return pixels.transpose(0, 2, 3, 1) if layout == "NCHW" else pixels


def to_pil(pixels: np.ndarray) -> Image.Image:
    """uint8 [H, W, C] (C 1 or 3) -> a PIL image (mode L or RGB)."""
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_pil(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 [H, W, C]."""
    image = np.asarray(Image.open(io.BytesIO(data)))
    return image[..., None] if image.ndim == 2 else image


def image_grid(images: Sequence[Image.Image], columns: int = 8, scale: int = 1, pad: int = 2) -> Image.Image:
    """Tile images left to right, top to bottom (scaled up `scale` times, nearest neighbour)."""
    if not images:
        raise ValueError("no images to put in a grid")
    width, height = images[0].size
    cell_w, cell_h = width * scale + pad, height * scale + pad
    rows = (len(images) + columns - 1) // columns
    cols = min(columns, len(images))
    grid = Image.new(images[0].mode, (cols * cell_w + pad, rows * cell_h + pad))
    for index, image in enumerate(images):
        tile = image.resize((width * scale, height * scale), Image.Resampling.NEAREST)
        grid.paste(tile, (pad + (index % columns) * cell_w, pad + (index // columns) * cell_h))
    return grid
