"""A small digit classifier trained on the same digits: the task-level check that a "7" is still a 7.

Multinomial logistic regression (scikit-learn) on the upscaled digits; its weights are plain arrays,
cached per process and, when a cache directory is given, as an .npz file (no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from triton_bundle.atomic import atomic_path
from triton_bundle.imagegen.digits import load_digit_images


@dataclass(frozen=True)
class DigitClassifier:
    weights: np.ndarray  # [pixels, classes]
    bias: np.ndarray  # [classes]
    size: int
    heldout_accuracy: float

    def _features(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.shape[1:] != (self.size, self.size, 1):
            raise ValueError(
                f"the classifier takes uint8 [B, {self.size}, {self.size}, 1], got {pixels.shape}"
            )
        return pixels.reshape(len(pixels), -1).astype(np.float32) / 127.5 - 1.0

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        logits = self._features(pixels) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 1] -> int64 [B] class ids."""
        return self.predict_proba(pixels).argmax(axis=1).astype(np.int64)


def _pixels(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint((images + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def train_classifier(size: int) -> DigitClassifier:
    from sklearn.linear_model import LogisticRegression

    train, heldout = load_digit_images(size, "train"), load_digit_images(size, "heldout")
    model = LogisticRegression(max_iter=300, C=0.5)
    x = _pixels(train.images).reshape(len(train), -1).astype(np.float32) / 127.5 - 1.0
    model.fit(x, train.labels)
    classifier = DigitClassifier(
        weights=model.coef_.T.astype(np.float32),
        bias=model.intercept_.astype(np.float32),
        size=size,
        heldout_accuracy=0.0,
    )
    accuracy = float(np.mean(classifier.predict(_pixels(heldout.images)) == heldout.labels))
    return DigitClassifier(classifier.weights, classifier.bias, size, accuracy)


@lru_cache(maxsize=4)
def _cached(size: int) -> DigitClassifier:
    return train_classifier(size)


def digit_classifier(size: int = 16, cache_dir: Path | None = None) -> DigitClassifier:
    """The classifier for `size` x `size` digits: trained once per process, or loaded from cache_dir."""
    if cache_dir is None:
        return _cached(size)
    path = Path(cache_dir) / f"digit-classifier-{size}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            return DigitClassifier(saved["weights"], saved["bias"], size, float(saved["heldout_accuracy"]))
    classifier = _cached(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, force=True) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            weights=classifier.weights,
            bias=classifier.bias,
            heldout_accuracy=classifier.heldout_accuracy,
        )
    return classifier
