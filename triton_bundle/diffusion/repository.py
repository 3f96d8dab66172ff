"""diffusion repositories: seed (+ class label, steps) -> DDIM loop calling the UNet (BLS) -> PNG, one ensemble.

<name>          ensemble: seed INT64 [1], class_label INT64 [1] and steps INT32 [1] (optional)
                -> IMAGE (PNG bytes), IMAGE_ARRAY (uint8 HWC)
<name>_sampler  Python: draws each seed's noise (imagegen.seeds' generator), runs the denoising loop
                for every request of its batch together, calling <name>_model once per step (BLS)
<name>_model    the UNet (onnxruntime in Python locally, a TensorRT plan on the nvidia target), with
                its own dynamic batcher: concurrent loops' steps meet there and run as one batch
<name>_png      Python: float image -> uint8 -> PNG bytes (the image-generation postprocess)
"""

from __future__ import annotations

import json
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.diffusion import ddim
from triton_bundle.diffusion import names as du
from triton_bundle.imagegen import contract as image
from triton_bundle.imagegen.repository import image_dims, png_config
from triton_bundle.repository import contract
from triton_bundle.repository.configs import (
    PYTHON_BACKEND,
    Step,
    _base,
    _batching,
    _cpu_instances,
    _param,
    ensemble_config,
)
from triton_bundle.repository.layout import ModelFiles, python_model_source
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.repository.sources import ModelSources, RepositoryError
from triton_bundle.spec import ModelSpec

SAMPLER_SOURCE = "diffusion_sampler"
_INPUTS = [(image.SEED, mc.TYPE_INT64, [1]), (image.CLASS_LABEL, mc.TYPE_INT64, [1], True),
           (image.STEPS, mc.TYPE_INT32, [1], True)]  # fmt: skip


def sampler_model(name: str) -> str:
    return f"{name}_sampler"


def sampler_config(name: str, spec: ModelSpec, options: RepositoryOptions, num_classes: int, unet: str):
    config = _base(name, options)
    config.backend = PYTHON_BACKEND
    _batching(config, options)  # requests arriving together denoise together
    _cpu_instances(config, spec.diffusion.orchestrator_instances)
    for tensor_name, data_type, dims, *optional in _INPUTS:
        config.input.add(name=tensor_name, data_type=data_type, dims=dims, optional=bool(optional))
    graph_dims, _ = image_dims(spec.image)
    config.output.add(name=image.GENERATED, data_type=mc.TYPE_FP32, dims=graph_dims)
    cfg = spec.diffusion
    for key, value in {
        "unet_model": unet,
        "unet_max_batch": options.max_batch_size,
        "num_classes": num_classes,
        "default_steps": cfg.steps,
        "min_steps": cfg.min_steps,
        "max_steps": cfg.max_steps,
        "latent_shape": json.dumps(list(spec.image.latent_shape)),
    }.items():
        _param(config, key, value)
    return config


def _check_graph(graph) -> None:
    names = {t.name for t in graph.inputs}
    if names != {du.SAMPLE, du.TIMESTEP, du.CLASS_LABELS} or du.NOISE not in {t.name for t in graph.outputs}:
        raise RepositoryError(
            f"a diffusion UNet graph takes {du.SAMPLE}, {du.TIMESTEP}, {du.CLASS_LABELS} and gives {du.NOISE}; "
            f"this one takes {sorted(names)} (re-export it: triton-bundle export SPEC)"
        )


def _schedule_json(checkpoint: Path | None) -> str:
    """The trained noise schedule for the sampler (diffusers computes it; loaded only here, lazily)."""
    from triton_bundle.diffusion.unet import ddim_schedule, load_scheduler

    if checkpoint is None:
        raise RepositoryError(
            "no diffusion checkpoint recorded: run triton-bundle finetune / export SPEC first"
        )
    return ddim_schedule(load_scheduler(checkpoint)).to_json()


def _num_classes(sources: ModelSources) -> int:
    if sources.labels:
        return len(sources.labels)
    path = sources.checkpoint / du.LABELS_FILE if sources.checkpoint else None
    if path is None or not path.is_file():
        raise RepositoryError("no class labels: set `labels` in the spec (the checkpoint has no labels.json)")
    return len(json.loads(path.read_text(encoding="utf-8")))


def diffusion_plan(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources):
    from triton_bundle.repository.pipelines import RepositoryPlan
    from triton_bundle.repository.tensor_model import build_tensor_model, common_signature

    assert spec.image is not None  # the spec validator requires it for this task
    graph = common_signature(sources)
    _check_graph(graph)
    tensor = build_tensor_model(
        spec.name, options, sources, graph, pad_values={}, sequence=None, label_file="", labels_text=None
    )
    names = {
        "ensemble": contract.ensemble_model(spec.name),
        "sampler": sampler_model(spec.name),
        "tensor": tensor.name,
        "postprocess": image.png_model(spec.name),
    }
    classes = _num_classes(sources)
    _, pixels = image_dims(spec.image)
    passed = {n: n for n in (image.SEED, image.CLASS_LABEL, image.STEPS)}
    ensemble = ensemble_config(
        names["ensemble"],
        options,
        _INPUTS,
        [(image.IMAGE, mc.TYPE_STRING, [1]), (image.IMAGE_ARRAY, mc.TYPE_UINT8, pixels)],
        [
            Step(names["sampler"], passed, {image.GENERATED: "_image"}),
            Step(names["postprocess"], {image.GENERATED: "_image"},
                 {image.IMAGE: image.IMAGE, image.IMAGE_ARRAY: image.IMAGE_ARRAY}),
        ],
    )  # fmt: skip
    sampler = ModelFiles(
        sampler_config(names["sampler"], spec, options, classes, tensor.name),
        {
            "1/model.py": python_model_source(SAMPLER_SOURCE),
            "1/ddim.py": Path(ddim.__file__),
            f"1/{ddim.SCHEDULE_FILE}": _schedule_json(sources.checkpoint),
        },
    )
    models = [
        ModelFiles(ensemble),
        sampler,
        tensor,
        ModelFiles(
            png_config(names["postprocess"], options, spec.image),
            {"1/model.py": python_model_source("image_png")},
        ),
    ]
    cfg = spec.diffusion
    notes = [
        f"diffusion ensemble '{spec.name}': seed -> DDIM {cfg.steps} steps (requests may ask {cfg.min_steps}-"
        f"{cfg.max_steps}) x UNet '{tensor.name}' ({', '.join(v.variant for v in sources.variants)}, via BLS, "
        f"{cfg.orchestrator_instances} loops in flight) -> PNG {spec.image.height}x{spec.image.width}; pixel "
        "space, no VAE"
    ]
    return RepositoryPlan(models, names | {"entry": names["ensemble"]}, notes)
