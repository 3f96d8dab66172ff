"""Image quality of a variant against the FP32 reference at the same seeds: PSNR, SSIM, class agreement.

PSNR and SSIM come from scikit-image (`skimage.metrics`), computed per image on uint8 pixels (what the
user receives) and averaged; PSNR of identical images is infinite and reported as such.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel


class ImageQuality(BaseModel):
    images: int
    psnr_db: float  # mean over images; inf when every image is identical
    min_psnr_db: float  # the worst image
    ssim: float  # mean over images, 1.0 = identical
    class_agreement: float | None = None  # share of images the digit classifier labels the same


def _check(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape or reference.ndim != 4 or reference.dtype != np.uint8:
        raise ValueError(
            f"expected two uint8 batches [B, H, W, C] of one shape, got {reference.shape} {reference.dtype} "
            f"and {test.shape} {test.dtype}"
        )


def psnr_per_image(reference: np.ndarray, test: np.ndarray) -> list[float]:
    from skimage.metrics import peak_signal_noise_ratio

    _check(reference, test)
    out = []
    for ref, img in zip(reference, test, strict=True):
        out.append(
            math.inf if np.array_equal(ref, img) else float(peak_signal_noise_ratio(ref, img, data_range=255))
        )
    return out


def ssim_per_image(reference: np.ndarray, test: np.ndarray) -> list[float]:
    from skimage.metrics import structural_similarity

    _check(reference, test)
    side = min(reference.shape[1:3])
    window = min(7, side if side % 2 else side - 1)  # an odd window that fits the image
    return [
        float(structural_similarity(ref, img, data_range=255, channel_axis=2, win_size=window))
        for ref, img in zip(reference, test, strict=True)
    ]


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    values = psnr_per_image(reference, test)
    return math.inf if all(math.isinf(v) for v in values) else float(np.mean([min(v, 100.0) for v in values]))


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    return float(np.mean(ssim_per_image(reference, test)))


def compare_images(reference: np.ndarray, test: np.ndarray, classifier=None) -> ImageQuality:
    """PSNR / SSIM of `test` against `reference` (uint8 [B, H, W, C]); class agreement when a classifier
    (anything with `.predict(uint8 batch) -> labels`) is given."""
    per_image = psnr_per_image(reference, test)
    agreement = None
    if classifier is not None:
        agreement = float(np.mean(classifier.predict(reference) == classifier.predict(test)))
    return ImageQuality(
        images=len(reference),
        psnr_db=psnr(reference, test),
        min_psnr_db=min(per_image),
        ssim=ssim(reference, test),
        class_agreement=agreement,
    )
