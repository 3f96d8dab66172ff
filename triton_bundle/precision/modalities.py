"""The precision stage's data per modality: held-out batches, gold labels, calibration, latency feeds.

Text is tokenized with the checkpoint's tokenizer; images go through the checkpoint's image
processor (the exported graph's own preprocessing); tensors come from the spec's `.npz` files.
Calibration uses real data from the spec (data.calibration, else data.train, else data.eval, which
the report calls optimistic); random data only when precision.calibration.allow_random says so.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from triton_bundle.data import load_texts
from triton_bundle.errors import BundleError
from triton_bundle.export.record import ExportRecord
from triton_bundle.precision.calibration import (
    CalibrationSet,
    RandomCalibrationWarning,
    calibration_set,
    source_path,
)
from triton_bundle.precision.errors import CalibrationDataError, UnsupportedPrecisionTaskError
from triton_bundle.precision.text_inputs import Feeds, count_rows, encode_batches, load_tokenizer
from triton_bundle.spec import ModelSpec

LATENCY_BATCHES = (1, 8)


@dataclass
class PrecisionData:
    """What the stage measures and calibrates on, whatever the modality."""

    batches: list[Feeds]  # held-out examples in order, at most shapes.batch.max rows per batch
    gold: list[str | None]  # gold labels as written in the data (None: unlabelled)
    latency_feeds: dict[str, Feeds]
    calibrate: Callable[[], CalibrationSet]  # built only when an INT8 Q/DQ variant asks
    notes: list[str] = field(default_factory=list)


def _rows(feeds: Feeds, rows: Sequence[int]) -> Feeds:
    return {name: np.ascontiguousarray(array[list(rows)]) for name, array in feeds.items()}


def _split(feeds: Feeds, batch: int) -> list[Feeds]:
    total = count_rows([feeds])
    return [_rows(feeds, range(s, min(s + batch, total))) for s in range(0, total, batch)]


def _latency(feeds: Feeds, spec: ModelSpec, what: str) -> dict[str, Feeds]:
    total = count_rows([feeds])
    return {
        f"batch {b} x {what}": _rows(feeds, [i % total for i in range(b)])
        for b in sorted({min(b, spec.shapes.batch.max) for b in LATENCY_BATCHES})
    }


def _calibration_rows(spec: ModelSpec, feeds: Feeds, source: str, notes: list[str]) -> CalibrationSet:
    """Up to `samples` real rows (a fixed random subset, so reruns calibrate alike)."""
    cfg = spec.precision.calibration
    total = count_rows([feeds])
    rows = sorted(random.Random(0).sample(range(total), cfg.samples)) if total > cfg.samples else range(total)
    if total < cfg.samples:
        notes.append(f"only {total} calibration examples available (asked for {cfg.samples}); used all")
    batches = _split(_rows(feeds, rows), cfg.batch_size)
    return CalibrationSet(batches, source, count_rows(batches), cfg.method, notes)


def _random_calibration(spec: ModelSpec, like: Feeds, what: str) -> CalibrationSet:
    cfg = spec.precision.calibration
    message = (
        f"calibrating '{spec.name}' on {cfg.samples} random {what} because "
        "precision.calibration.allow_random is set: INT8 ranges will not reflect real inputs"
    )
    warnings.warn(message, RandomCalibrationWarning, stacklevel=3)
    rng = np.random.default_rng(0)
    batches = []
    for start in range(0, cfg.samples, cfg.batch_size):
        rows = min(cfg.batch_size, cfg.samples - start)
        batches.append(
            {n: rng.standard_normal((rows, *a.shape[1:])).astype(a.dtype) for n, a in like.items()}
        )
    return CalibrationSet(batches, "random", cfg.samples, cfg.method, [message])


def _real_calibration(spec: ModelSpec, load: Callable[[Path], Feeds], like: Feeds, what: str):
    def calibrate() -> CalibrationSet:
        if spec.precision.calibration.allow_random:
            return _random_calibration(spec, like, what)
        path, notes = source_path(spec)
        try:
            feeds = load(path)
        except BundleError as exc:
            raise CalibrationDataError(
                f"no calibration data for '{spec.name}': {exc}. Name real {what} in data.calibration or "
                "data.train, or set precision.calibration.allow_random: true to calibrate on random data"
            ) from None
        return _calibration_rows(spec, feeds, str(path), notes)

    return calibrate


# --- text -------------------------------------------------------------------------------------


def text_data(spec: ModelSpec, export: ExportRecord) -> PrecisionData:
    input_names = list(export.details.input_names)
    tokenizer = load_tokenizer(export.artifact("checkpoint"))
    eval_data = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, spec.data.label_field)
    batches = encode_batches(
        tokenizer, eval_data.texts, input_names, spec.shapes.batch.max, spec.shapes.sequence.max
    )
    seq = spec.shapes.sequence.opt
    latency_feeds = {}
    for batch in sorted({1, min(8, spec.shapes.batch.max)}):
        texts = [eval_data.texts[i % len(eval_data.texts)] for i in range(batch)]
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
        latency_feeds[f"batch {batch} x seq {seq}"] = {n: enc[n].astype(np.int64) for n in input_names}
    return PrecisionData(
        batches=batches,
        gold=list(eval_data.labels),
        latency_feeds=latency_feeds,
        calibrate=lambda: calibration_set(spec, tokenizer, input_names),
    )


# --- images -----------------------------------------------------------------------------------


def _pixels(spec: ModelSpec, processor, path: Path | None, name: str) -> tuple[Feeds, list[str | None]]:
    """The images of a data file or directory through the checkpoint's processor, with their labels."""
    from triton_bundle.export.image_data import load_image_paths, read_rgb

    data = load_image_paths(path, spec.data.image_field, spec.data.label_field)
    pixels = processor([read_rgb(p) for p in data.paths], return_tensors="np")["pixel_values"]
    return {name: np.ascontiguousarray(pixels, dtype=np.float32)}, list(data.labels)


def vision_data(spec: ModelSpec, export: ExportRecord) -> PrecisionData:
    import transformers

    from triton_bundle.hf import quiet_offline

    quiet_offline()
    name = next(iter(export.details.input_names))
    processor = transformers.AutoImageProcessor.from_pretrained(export.artifact("checkpoint"))
    feeds, gold = _pixels(spec, processor, spec.resolve(spec.data.eval), name)
    size = "x".join(str(d) for d in feeds[name].shape[2:])
    return PrecisionData(
        batches=_split(feeds, spec.shapes.batch.max),
        gold=gold,
        latency_feeds=_latency(feeds, spec, size),
        calibrate=_real_calibration(
            spec, lambda path: _pixels(spec, processor, path, name)[0], feeds, "images"
        ),
    )


# --- tensors ----------------------------------------------------------------------------------


def _npz(spec: ModelSpec, path: Path | None) -> Feeds:
    from triton_bundle.export.tensor_inputs import load_tensors

    return load_tensors(path, list(spec.inputs or []))


def _batch_axes(spec: ModelSpec) -> dict[str, int | None]:
    return {t.name: next((a for a, d in enumerate(t.shape) if d == "batch"), None) for t in spec.inputs or []}


def tensor_data(spec: ModelSpec, export: ExportRecord) -> PrecisionData:
    axes = _batch_axes(spec)
    if any(axis != 0 for axis in axes.values()):
        raise UnsupportedPrecisionTaskError(
            f"precision for '{spec.name}' needs every input's first dim to be 'batch' (got "
            f"{ {t.name: t.shape for t in spec.inputs or []} }); the gate batches the .npz rows along it"
        )
    feeds = _npz(spec, spec.resolve(spec.data.eval))
    return PrecisionData(
        batches=_split(feeds, spec.shapes.batch.max),
        gold=[None] * count_rows([feeds]),
        latency_feeds=_latency(feeds, spec, "eval row"),
        calibrate=_real_calibration(spec, lambda path: _npz(spec, path), feeds, "tensors (.npz rows)"),
    )


MODALITIES: dict[str, Callable[[ModelSpec, ExportRecord], PrecisionData]] = {
    "text": text_data,
    "vision": vision_data,
    "tensor": tensor_data,
}


def precision_data(spec: ModelSpec, export: ExportRecord) -> PrecisionData:
    modality = export.details.modality
    if modality not in MODALITIES:
        raise UnsupportedPrecisionTaskError(
            f"no precision data path for '{spec.name}' ({modality}, {export.details.task}); "
            f"supported: {', '.join(MODALITIES)}"
        )
    return MODALITIES[modality](spec, export)
