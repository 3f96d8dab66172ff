"""image-generation repositories: seed (+ class label) -> latent -> generator -> PNG, as one Triton ensemble.

<name>          ensemble: seed INT64 [1], class_label INT64 [1] (optional) -> IMAGE (PNG), IMAGE_ARRAY
<name>_latent   Python: draws each seed's latent server-side (imagegen.seeds' generator), checks labels
<name>_model    the generator graph (onnxruntime in Python locally, TensorRT plans on the nvidia target)
<name>_png      Python: float image -> uint8 -> PNG bytes (shared with diffusion's last step)
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.imagegen import contract as image
from triton_bundle.repository import contract
from triton_bundle.repository.configs import (
    PYTHON_BACKEND,
    Step,
    _base,
    _cpu_instances,
    _helper_batching,
    _param,
    ensemble_config,
)
from triton_bundle.repository.layout import ModelFiles, python_model_source
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.repository.sources import ModelSources, RepositoryError
from triton_bundle.spec import ImageSpec, ModelSpec

CLASS_ID = "class_id"


def _python(name: str, options: RepositoryOptions) -> mc.ModelConfig:
    config = _base(name, options)
    config.backend = PYTHON_BACKEND
    _helper_batching(config, options)
    _cpu_instances(config, 1)
    return config


def latent_config(name: str, options: RepositoryOptions, spec: ImageSpec, num_classes: int) -> mc.ModelConfig:
    config = _python(name, options)
    config.input.add(name=image.SEED, data_type=mc.TYPE_INT64, dims=[1])
    config.input.add(name=image.CLASS_LABEL, data_type=mc.TYPE_INT64, dims=[1], optional=True)
    config.output.add(name=image.LATENT, data_type=mc.TYPE_FP32, dims=list(spec.latent_shape))
    config.output.add(name=CLASS_ID, data_type=mc.TYPE_INT64, dims=[1])
    _param(config, "latent_shape", ",".join(str(d) for d in spec.latent_shape))
    _param(config, "num_classes", num_classes)
    return config


def image_dims(spec: ImageSpec) -> tuple[list[int], list[int]]:
    """(the generator's per-image output dims, the uint8 HWC dims clients get)."""
    chw = [spec.channels, spec.height, spec.width]
    graph = chw if spec.layout == "NCHW" else [spec.height, spec.width, spec.channels]
    return graph, [spec.height, spec.width, spec.channels]


def png_config(
    name: str, options: RepositoryOptions, spec: ImageSpec, input_name: str = image.GENERATED
) -> mc.ModelConfig:
    """The PNG postprocess: `input_name` float [C, H, W] (or HWC) -> IMAGE (PNG bytes), IMAGE_ARRAY uint8."""
    config = _python(name, options)
    graph, pixels = image_dims(spec)
    config.input.add(name=input_name, data_type=mc.TYPE_FP32, dims=graph)
    config.output.add(name=image.IMAGE, data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name=image.IMAGE_ARRAY, data_type=mc.TYPE_UINT8, dims=pixels)
    _param(config, "value_range", f"{spec.value_range[0]},{spec.value_range[1]}")
    _param(config, "layout", spec.layout)
    _param(config, "input_name", input_name)
    return config


def _check_graph(spec: ModelSpec, graph) -> None:
    from triton_bundle.imagegen.export import graph_inputs

    names = {t.name: t for t in graph.inputs}
    outputs = {t.name: t for t in graph.outputs}
    if set(names) != set(graph_inputs(spec)) or image.GENERATED not in outputs:
        raise RepositoryError(
            f"this spec's image-generation graph takes {graph_inputs(spec)} (class_label when the spec has "
            f"labels) and gives '{image.GENERATED}'; the exported one takes {sorted(names)} and gives "
            f"{sorted(outputs)}: re-export it"
        )
    if outputs[image.GENERATED].data_type != mc.TYPE_FP32:
        raise RepositoryError("the generator's image output must be float32 (FP16 variants keep float32 I/O)")


def image_plan(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources):
    from triton_bundle.repository.pipelines import RepositoryPlan
    from triton_bundle.repository.tensor_model import build_tensor_model, common_signature

    assert spec.image is not None  # the spec validator requires it for this task
    graph = common_signature(sources)
    _check_graph(spec, graph)
    tensor = build_tensor_model(
        spec.name, options, sources, graph, pad_values={}, sequence=None, label_file="", labels_text=None
    )
    names = {
        "ensemble": contract.ensemble_model(spec.name),
        "latent": image.latent_model(spec.name),
        "tensor": tensor.name,
        "postprocess": image.png_model(spec.name),
    }
    classes = len(spec.labels or [])
    _, pixels = image_dims(spec.image)
    ensemble = ensemble_config(
        names["ensemble"],
        options,
        [(image.SEED, mc.TYPE_INT64, [1]), (image.CLASS_LABEL, mc.TYPE_INT64, [1], True)],
        [(image.IMAGE, mc.TYPE_STRING, [1]), (image.IMAGE_ARRAY, mc.TYPE_UINT8, pixels)],
        [
            Step(names["latent"], {image.SEED: image.SEED, image.CLASS_LABEL: image.CLASS_LABEL},
                 {image.LATENT: "_latent", **({CLASS_ID: "_class"} if classes else {})}),
            Step(tensor.name, {image.LATENT: "_latent", **({image.CLASS_LABEL: "_class"} if classes else {})},
                 {image.GENERATED: "_image"}),
            Step(names["postprocess"], {image.GENERATED: "_image"},
                 {image.IMAGE: image.IMAGE, image.IMAGE_ARRAY: image.IMAGE_ARRAY}),
        ],
    )  # fmt: skip
    models = [
        ModelFiles(ensemble),
        ModelFiles(latent_config(names["latent"], options, spec.image, classes),
                   {"1/model.py": python_model_source("image_latent")}),
        tensor,
        ModelFiles(png_config(names["postprocess"], options, spec.image),
                   {"1/model.py": python_model_source("image_png")}),
    ]  # fmt: skip
    notes = [
        f"image ensemble '{spec.name}': seed -> latent {spec.image.latent_shape} (numpy PCG64) -> generator "
        f"({', '.join(v.variant for v in sources.variants)}) -> PNG {spec.image.height}x{spec.image.width}"
    ]
    return RepositoryPlan(models, names | {"entry": names["ensemble"]}, notes)
