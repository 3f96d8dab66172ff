"""Vision modality: a Hugging Face image checkpoint + its image processor over real image files.

The preprocessing (resize, crop, rescale, normalise) is read from the checkpoint's
preprocessor_config.json via AutoImageProcessor and recorded for the serving side, so a client can
send a raw image and the server reproduces exactly what the exported graph was verified on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from triton_bundle.export.image_data import load_image_paths, read_rgb
from triton_bundle.export.loaders import labels_of, load_hf_model
from triton_bundle.export.prepared import ParityCase, PreparedExport, chunks, cycle
from triton_bundle.export.tasks import ExportTask
from triton_bundle.spec import ModelSpec

PIXEL_VALUES = "pixel_values"
# Keys the record names explicitly; anything else the processor sets lands in `extra`.
_KNOWN = {
    "image_processor_type",
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "crop_pct",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_convert_rgb",
}


class ImagePreprocessing(BaseModel):
    """What turns a decoded image into the graph's pixel_values (recorded in the manifest)."""

    processor: str = Field(description="the checkpoint's image_processor_type")
    implementation: str = Field(description="the class that ran it (the PIL backend without torchvision)")
    channel_order: Literal["RGB"] = Field("RGB", description="images are decoded to RGB first")
    layout: Literal["NCHW"] = "NCHW"
    input_size: list[int] = Field(description="[channels, height, width] of pixel_values")
    do_resize: bool = False
    size: dict[str, int] | None = None
    resample: int | None = Field(None, description="PIL resampling filter id")
    resample_name: str | None = None
    do_center_crop: bool = False
    crop_size: dict[str, int] | None = None
    crop_pct: float | None = Field(None, description="resize to size/crop_pct, then centre-crop to size")
    do_rescale: bool = False
    rescale_factor: float | None = None
    do_normalize: bool = False
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


def describe_processor(processor, input_size: list[int]) -> ImagePreprocessing:
    from PIL import Image

    config = processor.to_dict()
    resample = config.get("resample")
    return ImagePreprocessing(
        processor=str(config.get("image_processor_type") or type(processor).__name__),
        implementation=type(processor).__name__,
        input_size=input_size,
        do_resize=bool(config.get("do_resize")),
        size=dict(config["size"]) if config.get("size") else None,
        resample=None if resample is None else int(resample),
        resample_name=None if resample is None else Image.Resampling(int(resample)).name.lower(),
        do_center_crop=bool(config.get("do_center_crop")),
        crop_size=dict(config["crop_size"]) if config.get("crop_size") else None,
        crop_pct=config.get("crop_pct"),
        do_rescale=bool(config.get("do_rescale")),
        rescale_factor=config.get("rescale_factor"),
        do_normalize=bool(config.get("do_normalize")),
        image_mean=list(config["image_mean"]) if config.get("image_mean") is not None else None,
        image_std=list(config["image_std"]) if config.get("image_std") is not None else None,
        extra={
            k: v
            for k, v in config.items()
            if k not in _KNOWN and not k.startswith("_") and isinstance(v, str | int | float | bool | list)
        },
    )


def prepare_vision(spec: ModelSpec, task: ExportTask, source: Path) -> PreparedExport:
    import transformers

    model, config = load_hf_model(source, task, spec.source.allow_pickle)
    processor = transformers.AutoImageProcessor.from_pretrained(source)
    data = load_image_paths(spec.resolve(spec.data.eval), spec.data.image_field, spec.data.label_field)
    pixels = processor([read_rgb(p) for p in data.paths], return_tensors="np")[PIXEL_VALUES]
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    rows = list(range(len(pixels)))
    batch = spec.shapes.batch

    def case(name: str, indices: list[int]) -> ParityCase:
        return ParityCase(name, {PIXEL_VALUES: pixels[indices]})

    height, width = pixels.shape[2:]
    cases = [
        case(f"min: batch {batch.min} x {height}x{width}", cycle(rows, batch.min)),
        case(f"opt: batch {batch.opt} x {height}x{width}", cycle(rows, batch.opt)),
        case(f"max: batch {batch.max} x {height}x{width}", cycle(rows, batch.max)),
    ]
    cases += [case(f"eval[{start}:{end}]", rows[start:end]) for start, end in chunks(len(rows), batch.max)]
    preprocessing = describe_processor(processor, list(pixels.shape[1:]))
    return PreparedExport(
        module=task.wrap(model, spec.export).eval(),
        input_axes={PIXEL_VALUES: dict(task.input_axes)},
        output_axes={name: dict(task.output_axes.get(name, {})) for name in task.output_names},
        cases=cases,
        source=Path(source),
        labels=labels_of(config),
        details={"preprocessing": preprocessing.model_dump(mode="json"), "images": len(data)},
    )
