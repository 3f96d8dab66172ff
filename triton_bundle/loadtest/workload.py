"""What the simulated clients send: real texts, images or tensor rows from the spec's data.

Texts are drawn uniformly from the spec's eval + train data, so requests carry the data's real length mix
(the tokenizer's and the model's cost depend on it). Images are the eval data's encoded files, sent as the
ensemble's IMAGE bytes. Tensor models get rows of the eval .npz (one array per input, rows along dim 0),
drawn at random per request. The pool is saved as JSON beside the run's settings, so every Locust worker samples
from the same texts (image paths must exist on every worker host).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from triton_bundle.atomic import write_text_atomic
from triton_bundle.data import load_texts
from triton_bundle.errors import BundleError
from triton_bundle.repository.contract import IMAGE_INPUT, TEXT_INPUT
from triton_bundle.spec import ModelSpec

DEFAULT_POOL_SIZE = 10_000
# The text-generation client contract (the served decoder's inputs).
GENERATION_TEXT_INPUT = "text_input"
GENERATION_MAX_TOKENS = "max_tokens"
IMAGE_POOL_SIZE = 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
TEXT_TASKS = ("text-classification", "token-classification", "feature-extraction")

# spec dtype -> Triton datatype (the KServe v2 names tritonclient uses)
TRITON_DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
    "string": "BYTES",
}


class WorkloadError(BundleError, ValueError):
    """The spec's data cannot produce requests for this model."""


class TensorInputSpec(BaseModel):
    """One model input of a tensor workload: shape of ONE item (the batch dim is added per request)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    datatype: str
    item_shape: list[int]


class LengthProfile(BaseModel):
    """The length mix the requests carry (characters and whitespace-separated words per text)."""

    texts: int
    chars_p50: float
    chars_p90: float
    chars_p99: float
    chars_max: int
    words_p50: float
    words_p90: float
    words_max: int


@dataclass(frozen=True)
class InputArray:
    name: str
    datatype: str
    array: np.ndarray


class Workload(BaseModel):
    """Texts (sampled from real data) or tensor input specs, plus where they came from."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["text", "image", "tensor", "prompt", "seed"]
    source: str = Field(description="what the requests are made of, for the report")
    input_name: str = TEXT_INPUT
    texts: list[str] = Field(default_factory=list)
    images: list[Path] = Field(default_factory=list, description="encoded image files (absolute paths)")
    tensors: list[TensorInputSpec] = Field(default_factory=list)
    tensor_file: Path | None = Field(None, description="tensor models: the .npz whose rows are sent")
    classes: int = Field(0, description="seed workloads: class labels drawn from 0..classes-1 (0: none sent)")
    _image_bytes: dict[Path, bytes] = PrivateAttr(default_factory=dict)
    _rows: dict[str, np.ndarray] | None = PrivateAttr(None)

    def make_batch(self, rng: random.Random, batch_size: int) -> list[InputArray]:
        """The inputs of one request of `batch_size` items."""
        if self.kind in ("text", "image"):
            picked = [self._item(rng) for _ in range(batch_size)]
            return [InputArray(self.input_name, "BYTES", np.array(picked, dtype=object).reshape(-1, 1))]
        if self.kind == "seed":  # image generation: a fresh seed (and class) per image
            return self._seed_batch(rng, batch_size)
        rows = self._tensor_rows()
        count = next(iter(rows.values())).shape[0]
        picked = [rng.randrange(count) for _ in range(batch_size)]
        return [InputArray(t.name, t.datatype, rows[t.name][picked]) for t in self.tensors]

    def _tensor_rows(self) -> dict[str, np.ndarray]:
        if self._rows is None:  # read once per process, not per request
            if self.tensor_file is None:
                raise WorkloadError("a tensor workload needs tensor_file (the spec's data.eval .npz)")
            with np.load(self.tensor_file, allow_pickle=False) as npz:
                self._rows = {
                    t.name: np.ascontiguousarray(npz[t.name], dtype=_numpy_dtype(t.datatype))
                    for t in self.tensors
                }
        return self._rows

    def _seed_batch(self, rng: random.Random, batch_size: int) -> list[InputArray]:
        from triton_bundle.imagegen import contract

        seeds = np.array([rng.randrange(2**31) for _ in range(batch_size)], dtype=np.int64).reshape(-1, 1)
        arrays = [InputArray(contract.SEED, "INT64", seeds)]
        if self.classes:
            labels = np.array([rng.randrange(self.classes) for _ in range(batch_size)], dtype=np.int64)
            arrays.append(InputArray(contract.CLASS_LABEL, "INT64", labels.reshape(-1, 1)))
        return arrays

    def prompt(self, rng: random.Random) -> str:
        """One generation prompt (kind 'prompt')."""
        return rng.choice(self.texts)

    def _item(self, rng: random.Random) -> bytes:
        if self.kind == "text":
            return rng.choice(self.texts).encode("utf-8")
        path = rng.choice(self.images)
        if path not in self._image_bytes:  # read once per process, not per request
            self._image_bytes[path] = path.read_bytes()
        return self._image_bytes[path]

    def expected_inputs(self) -> dict[str, str]:
        """Input name -> Triton datatype the requests carry (checked against the model's metadata)."""
        if self.kind == "tensor":
            return {t.name: t.datatype for t in self.tensors}
        if self.kind == "prompt":
            return {GENERATION_TEXT_INPUT: "BYTES", GENERATION_MAX_TOKENS: "INT32"}
        if self.kind == "seed":
            return {"seed": "INT64", **({"class_label": "INT64"} if self.classes else {})}
        return {self.input_name: "BYTES"}

    def length_profile(self) -> LengthProfile | None:
        if self.kind not in ("text", "prompt"):
            return None
        chars = np.array([len(t) for t in self.texts])
        words = np.array([len(t.split()) for t in self.texts])
        return LengthProfile(
            texts=len(self.texts),
            chars_p50=float(np.percentile(chars, 50)),
            chars_p90=float(np.percentile(chars, 90)),
            chars_p99=float(np.percentile(chars, 99)),
            chars_max=int(chars.max()),
            words_p50=float(np.percentile(words, 50)),
            words_p90=float(np.percentile(words, 90)),
            words_max=int(words.max()),
        )

    def save(self, path: Path) -> Path:
        return write_text_atomic(path, self.model_dump_json())

    @classmethod
    def load(cls, path: Path | str) -> Workload:
        path = Path(path)
        if not path.is_file():
            raise WorkloadError(f"workload file not found: {path} (the runner writes it beside the settings)")
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


def _numpy_dtype(datatype: str) -> np.dtype:
    return np.dtype(bool) if datatype == "BOOL" else np.dtype(datatype.lower().replace("fp", "float"))


def text_workload(spec: ModelSpec, *, pool_size: int = DEFAULT_POOL_SIZE, seed: int = 0) -> Workload:
    """Texts from the spec's eval and train data, a uniform sample of at most `pool_size`."""
    files = [p for p in (spec.resolve(spec.data.eval), spec.resolve(spec.data.train)) if p is not None]
    texts: list[str] = []
    for path in files:
        if path.is_file():
            texts += load_texts(path, spec.data.text_field, None).texts
    if not texts:
        raise WorkloadError(
            f"no texts to send: none of {[str(p) for p in files]} exists; the load test samples requests "
            "from the spec's data.eval / data.train"
        )
    texts = [t for t in texts if t.strip()]
    if len(texts) > pool_size:
        texts = random.Random(seed).sample(texts, pool_size)
    names = ", ".join(p.name for p in files if p.is_file())
    return Workload(kind="text", source=f"{len(texts)} texts sampled from {names}", texts=texts)


def _image_paths(path: Path, image_field: str) -> list[Path]:
    """Image files: a directory's images, or the `image_field` of each .jsonl / .csv row (relative paths
    resolve against the data file's directory)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        raise WorkloadError(f"{path}: expected a directory of images, a .jsonl or a .csv naming image files")
    paths = []
    for number, row in enumerate(rows, start=1):
        if image_field not in row:
            raise WorkloadError(f"{path}: row {number} has no '{image_field}' field (data.image_field)")
        image = Path(str(row[image_field]))
        paths.append(image if image.is_absolute() else (path.parent / image).resolve())
    return paths


def image_workload(spec: ModelSpec, *, pool_size: int = IMAGE_POOL_SIZE, seed: int = 0) -> Workload:
    """Encoded images from the spec's eval data, a uniform sample of at most `pool_size` files."""
    path = spec.resolve(spec.data.eval)
    if path is None or not path.exists():
        raise WorkloadError(f"no images to send: data.eval ({path}) does not exist")
    paths = _image_paths(path, spec.data.image_field)
    missing = [p for p in paths if not p.is_file()]
    if missing or not paths:
        raise WorkloadError(
            f"{path}: {len(missing)} of {len(paths)} image files missing (first: {missing[0] if missing else '-'})"
        )
    if len(paths) > pool_size:
        paths = random.Random(seed).sample(paths, pool_size)
    return Workload(
        kind="image", source=f"{len(paths)} images from {path.name}", input_name=IMAGE_INPUT, images=paths
    )


def tensor_workload(spec: ModelSpec) -> Workload:
    """Rows of the spec's eval .npz (the export's parity data), checked against the declared inputs."""
    from triton_bundle.export.errors import ExportError
    from triton_bundle.export.tensor_inputs import load_tensors

    if not spec.inputs:
        raise WorkloadError("task 'tensor' needs 'inputs' in the spec to build requests")
    path = spec.resolve(spec.data.eval)
    try:
        arrays = load_tensors(path, spec.inputs)
    except ExportError as exc:
        raise WorkloadError(f"no tensor rows to send: {exc}") from None
    rows = {int(a.shape[0]) for a in arrays.values()}
    if len(rows) != 1 or 0 in rows:
        raise WorkloadError(
            f"{path}: the inputs need the same number of rows (> 0) along dim 0, got {sorted(rows)}"
        )
    tensors = [
        TensorInputSpec(
            name=t.name, datatype=TRITON_DATATYPES[t.dtype], item_shape=list(arrays[t.name].shape[1:])
        )
        for t in spec.inputs
    ]
    source = f"{rows.pop()} rows of {path.name}"
    return Workload(kind="tensor", source=source, tensors=tensors, tensor_file=path)


def prompt_workload(spec: ModelSpec, *, pool_size: int = DEFAULT_POOL_SIZE, seed: int = 0) -> Workload:
    """Generation prompts: the first N words of each data text (loadtest.generation.prompt_words, else
    generation.prompt_words: the length the export's parity prompts have)."""
    texts = text_workload(spec, pool_size=pool_size, seed=seed)
    words = spec.loadtest.generation.prompt_words or spec.generation.prompt_words
    prompts = [" ".join(t.split()[:words]) if words else t for t in texts.texts]
    cut = f", first {words} words each" if words else ""
    return Workload(
        kind="prompt",
        source=f"{len(prompts)} prompts from {texts.source.split(' from ', 1)[-1]}{cut}",
        input_name=GENERATION_TEXT_INPUT,
        texts=prompts,
    )


def workload_for(spec: ModelSpec, *, seed: int = 0) -> Workload:
    """The workload matching the spec's task."""
    if spec.task == "text-generation":
        return prompt_workload(spec, seed=seed)
    if spec.task in TEXT_TASKS:
        return text_workload(spec, seed=seed)
    if spec.task == "image-classification":
        return image_workload(spec, seed=seed)
    if spec.task in ("image-generation", "diffusion"):  # random seeds (and classes): every image is new
        return Workload(kind="seed", source="random seeds", input_name="seed", classes=len(spec.labels or []))
    return tensor_workload(spec)
