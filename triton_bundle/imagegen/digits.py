"""scikit-learn's 8x8 handwritten digits (1,797 labelled images, shipped with the package: no download).

Upscaled bilinearly to `size` x `size` and mapped to [-1, 1] (the range a tanh generator produces).
Every 5th image is held out (gates, classifier checks); the rest trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

DIGIT_LABELS = [str(i) for i in range(10)]
HELDOUT_EVERY = 5

Split = Literal["train", "heldout", "all"]


@dataclass(frozen=True)
class DigitImages:
    images: np.ndarray  # float32 [N, 1, size, size] in [-1, 1]
    labels: np.ndarray  # int64 [N], 0..9

    def __len__(self) -> int:
        return len(self.labels)


@lru_cache(maxsize=4)
def _all_digits(size: int) -> DigitImages:
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N, 1, 8, 8] in [0, 1]
    if size != pixels.shape[-1]:
        pixels = torch.nn.functional.interpolate(
            pixels, size=(size, size), mode="bilinear", align_corners=False
        )
    images = (pixels.clamp(0, 1) * 2 - 1).numpy().astype(np.float32)
    return DigitImages(images=images, labels=data.target.astype(np.int64))


def load_digit_images(size: int = 16, split: Split = "train") -> DigitImages:
    """The digits at `size` x `size`; `split` picks training, held-out (every 5th) or all images."""
    if size < 8:
        raise ValueError(f"digit images are 8x8 at the source; size must be at least 8, got {size}")
    digits = _all_digits(size)
    if split == "all":
        return digits
    held = np.arange(len(digits)) % HELDOUT_EVERY == 0
    keep = held if split == "heldout" else ~held
    return DigitImages(images=digits.images[keep], labels=digits.labels[keep])
