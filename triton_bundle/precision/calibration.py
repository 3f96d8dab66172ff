"""Calibration data for INT8: real texts named in the spec, tokenized at natural lengths.

Source order: data.calibration, else data.train, else data.eval (then the gate is optimistic, and
the report says so). Random token ids are used only when the spec asks for them (allow_random),
with a warning; never as a silent fallback.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

from triton_bundle.data import load_texts
from triton_bundle.precision.errors import CalibrationDataError
from triton_bundle.precision.text_inputs import Feeds, count_rows, encode_batches, random_batches
from triton_bundle.spec import CalibrationSpec, ModelSpec

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class RandomCalibrationWarning(UserWarning):
    """Calibrating on random token ids: INT8 ranges will not match real traffic."""


class FeedReader(CalibrationDataReader):
    """onnxruntime's calibration reader over prepared feed batches (re-readable via rewind)."""

    def __init__(self, batches: Sequence[Feeds]) -> None:
        self.batches = list(batches)
        self._index, self._end = 0, len(self.batches)

    def get_next(self) -> Feeds | None:
        if self._index >= self._end:
            return None
        self._index += 1
        return self.batches[self._index - 1]

    def rewind(self) -> None:
        self._index, self._end = 0, len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read batches [start, end) only: onnxruntime's strided calibration feeds one slice at a time."""
        self._index, self._end = start_index, min(end_index, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class CalibrationSet:
    batches: list[Feeds]
    source: str  # a data file path, or "random"
    samples: int
    method: str
    notes: list[str] = field(default_factory=list)

    def reader(self) -> FeedReader:
        return FeedReader(self.batches)


def source_path(spec: ModelSpec) -> tuple[Path, list[str]]:
    for path in (spec.data.calibration, spec.data.train):
        if path is not None:
            return spec.resolve(path), []
    return spec.resolve(spec.data.eval), [
        "calibrated on the evaluation data (no data.calibration or data.train in the spec): the gate "
        "measures on data the ranges were fitted to, so it is optimistic"
    ]


def calibration_set(
    spec: ModelSpec, tokenizer, input_names: Sequence[str], settings: CalibrationSpec | None = None
) -> CalibrationSet:
    """Up to `samples` real texts (all when fewer), tokenized at natural lengths; or random ids if asked."""
    cfg = settings or spec.precision.calibration
    max_length = spec.shapes.sequence.max
    if cfg.allow_random:
        message = (
            f"calibrating '{spec.name}' on {cfg.samples} random token sequences because "
            "precision.calibration.allow_random is set: INT8 ranges will not reflect real inputs"
        )
        warnings.warn(message, RandomCalibrationWarning, stacklevel=2)
        batches = random_batches(len(tokenizer), input_names, cfg.samples, cfg.batch_size, max_length)
        return CalibrationSet(batches, "random", cfg.samples, cfg.method, [message])

    path, notes = source_path(spec)
    try:
        texts = load_texts(path, spec.data.text_field, None).texts
    except Exception as exc:  # DataError and friends: say which calibration source failed
        raise CalibrationDataError(
            f"no calibration data for '{spec.name}': {exc}. Name real texts in data.calibration or "
            "data.train, or set precision.calibration.allow_random: true to calibrate on random data"
        ) from None
    if len(texts) > cfg.samples:
        texts = random.Random(0).sample(texts, cfg.samples)  # a fixed subset: reruns calibrate alike
    elif len(texts) < cfg.samples:
        notes.append(f"only {len(texts)} calibration texts available (asked for {cfg.samples}); used all")
    batches = encode_batches(tokenizer, texts, input_names, cfg.batch_size, max_length)
    return CalibrationSet(batches, str(path), count_rows(batches), cfg.method, notes)
