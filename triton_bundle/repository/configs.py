"""config.pbtxt builders: one function per model kind, each returning a model_config_pb2.ModelConfig.

Only protobuf objects here; text is produced by protobuf's text_format when the repository is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository import contract
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.repository.tensors import GraphSignature, TensorInfo
from triton_bundle.shapes import Profile

PYTHON_BACKEND = "python"
ONNXRUNTIME_PLATFORM = "onnxruntime_onnx"
TENSORRT_PLATFORM = "tensorrt_plan"
ENSEMBLE_PLATFORM = "ensemble"
LABELS_FILE = "labels.txt"


def _param(config: mc.ModelConfig, key: str, value: object) -> None:
    config.parameters[key].string_value = str(value)


def _base(name: str, options: RepositoryOptions) -> mc.ModelConfig:
    return mc.ModelConfig(name=name, max_batch_size=options.max_batch_size)


def _batching(config: mc.ModelConfig, options: RepositoryOptions, preferred: Sequence[int] = ()) -> None:
    """The model's dynamic batcher: waits up to max_queue_delay_us to fill a batch."""
    if not options.dynamic_batching:
        return
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    # TensorRT profiles' opt batches when given, else the spec's (tuned) sizes.
    config.dynamic_batching.preferred_batch_size.extend(preferred or options.preferred_batch_sizes)


def _helper_batching(config: mc.ModelConfig, options: RepositoryOptions) -> None:
    """Tokenizer / pre- / postprocess steps cost far less than the model: waiting to fill their batches
    only adds latency, while under load requests still queue up behind a busy step and batch anyway."""
    if options.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = options.helper_queue_delay_us


def _io(
    target: Iterable[TensorInfo],
    repeated,  # config.input / config.output
    *,
    ragged: bool = False,
    label_file: str = "",
) -> None:
    for tensor in target:
        entry = repeated.add(name=tensor.name, data_type=tensor.data_type, dims=list(tensor.dims[1:]))
        if ragged and -1 in tensor.dims[1:]:
            entry.allow_ragged_batch = True
        if label_file:
            entry.label_filename = label_file


def _version_policy(config: mc.ModelConfig, options: RepositoryOptions) -> None:
    if options.resolved_version_policy == "all":
        config.version_policy.all.SetInParent()
    else:
        config.version_policy.latest.num_versions = 1


def _cpu_instances(config: mc.ModelConfig, count: int) -> None:
    config.instance_group.add(count=count, kind=mc.ModelInstanceGroup.KIND_CPU)


# ------------------------------------------------------------------------------------------ python models


@dataclass(frozen=True)
class TokenizerSettings:
    max_length: int
    min_length: int
    padding: str
    bucket_size: int
    pad_id: int
    outputs: tuple[TensorInfo, ...]  # the tensor model's token inputs, in graph order
    spans: bool = False  # token classification: also offsets + special_tokens_mask for the postprocess


def tokenizer_config(name: str, options: RepositoryOptions, settings: TokenizerSettings) -> mc.ModelConfig:
    config = _base(name, options)
    config.backend = PYTHON_BACKEND
    config.input.add(name=contract.TEXT_INPUT, data_type=mc.TYPE_STRING, dims=[1])
    id_type = {t.data_type for t in settings.outputs}
    dtype = "int32" if id_type == {mc.TYPE_INT32} else "int64"
    for tensor in settings.outputs:
        config.output.add(name=tensor.name, data_type=tensor.data_type, dims=[-1])
    names = [t.name for t in settings.outputs]
    if settings.spans:
        config.output.add(name=contract.OFFSETS, data_type=mc.TYPE_INT32, dims=[-1, 2])
        config.output.add(name=contract.SPECIAL_TOKENS_MASK, data_type=mc.TYPE_INT32, dims=[-1])
        names += [contract.OFFSETS, contract.SPECIAL_TOKENS_MASK]
    _helper_batching(config, options)
    _cpu_instances(config, options.tokenizer_instances)
    _param(config, "tokenizer_file", "tokenizer.json")
    _param(config, "max_length", settings.max_length)
    _param(config, "min_length", settings.min_length)
    _param(config, "padding", settings.padding)
    _param(config, "bucket_size", settings.bucket_size)
    _param(config, "pad_id", settings.pad_id)
    _param(config, "outputs", ",".join(names))
    _param(config, "dtype", dtype)
    return config


def image_preprocess_config(
    name: str,
    options: RepositoryOptions,
    pixels: TensorInfo,
    mean: Sequence[float],
    std: Sequence[float],
    rescale: float,
) -> mc.ModelConfig:
    config = _base(name, options)
    config.backend = PYTHON_BACKEND
    config.input.add(name=contract.IMAGE_INPUT, data_type=mc.TYPE_STRING, dims=[1])
    _io([pixels], config.output)
    _helper_batching(config, options)
    _cpu_instances(config, options.tokenizer_instances)
    _, _, height, width = pixels.dims
    _param(config, "height", height)
    _param(config, "width", width)
    _param(config, "mean", ",".join(f"{v:g}" for v in mean))
    _param(config, "std", ",".join(f"{v:g}" for v in std))
    _param(config, "rescale", f"{rescale:.10g}")
    _param(config, "output_name", pixels.name)
    _param(config, "dtype", "float16" if pixels.data_type == mc.TYPE_FP16 else "float32")
    return config


def classification_postprocess_config(
    name: str, options: RepositoryOptions, logits: TensorInfo, num_labels: int
) -> mc.ModelConfig:
    config = _base(name, options)
    config.backend = PYTHON_BACKEND
    config.input.add(name=logits.name, data_type=logits.data_type, dims=[num_labels])
    top_k = min(options.top_k, num_labels)
    config.output.add(name=contract.LABELS_OUTPUT, data_type=mc.TYPE_STRING, dims=[top_k])
    config.output.add(name=contract.SCORES_OUTPUT, data_type=mc.TYPE_FP32, dims=[top_k])
    config.output.add(name=contract.PROBABILITIES_OUTPUT, data_type=mc.TYPE_FP32, dims=[num_labels])
    _helper_batching(config, options)
    _cpu_instances(config, 1)
    _param(config, "labels_file", LABELS_FILE)
    _param(config, "input_name", logits.name)
    _param(config, "top_k", top_k)
    return config


@dataclass(frozen=True)
class TokenPostprocessSettings:
    logits: TensorInfo  # [batch, sequence, labels]
    input_ids: TensorInfo
    unk_id: int
    max_length: int  # the tokenizer's: TEXT is cut to the same characters before offsets apply


def token_postprocess_config(
    name: str, options: RepositoryOptions, settings: TokenPostprocessSettings
) -> mc.ModelConfig:
    """Token classification: TEXT + token spans + per-token logits -> ENTITIES (JSON per text)."""
    config = _base(name, options)
    config.backend = PYTHON_BACKEND
    config.input.add(name=contract.TEXT_INPUT, data_type=mc.TYPE_STRING, dims=[1])
    config.input.add(name=contract.AGGREGATION_INPUT, data_type=mc.TYPE_STRING, dims=[1], optional=True)
    ids = settings.input_ids
    for input_name, data_type, dims in (
        (ids.name, ids.data_type, [-1]),
        (contract.OFFSETS, mc.TYPE_INT32, [-1, 2]),
        (contract.SPECIAL_TOKENS_MASK, mc.TYPE_INT32, [-1]),
        (settings.logits.name, settings.logits.data_type, [-1, settings.logits.dims[-1]]),
    ):
        # Each request keeps its own padded width: ragged, never re-padded by the batcher.
        config.input.add(name=input_name, data_type=data_type, dims=dims, allow_ragged_batch=True)
    config.output.add(name=contract.ENTITIES_OUTPUT, data_type=mc.TYPE_STRING, dims=[1])
    _helper_batching(config, options)
    _cpu_instances(config, 1)
    _param(config, "labels_file", LABELS_FILE)
    _param(config, "tokenizer_file", "tokenizer.json")
    _param(config, "unk_id", settings.unk_id)
    _param(config, "max_length", settings.max_length)
    _param(config, "aggregation_strategy", options.aggregation_strategy)
    _param(config, "ignore_labels", ",".join(options.ignore_labels))
    _param(config, "logits_name", settings.logits.name)
    return config


def embedding_postprocess_config(
    name: str, options: RepositoryOptions, embedding: TensorInfo, mask: TensorInfo | None
) -> mc.ModelConfig:
    config = _base(name, options)
    config.backend = PYTHON_BACKEND
    _io([embedding], config.input, ragged=True)
    if mask is not None:
        _io([mask], config.input, ragged=True)
    config.output.add(name=contract.EMBEDDING_OUTPUT, data_type=mc.TYPE_FP32, dims=[embedding.dims[-1]])
    _helper_batching(config, options)
    _cpu_instances(config, 1)
    _param(config, "input_name", embedding.name)
    _param(config, "mask_name", mask.name if mask is not None else "")
    _param(config, "normalize", "true" if options.normalize_embeddings else "false")
    return config


# ------------------------------------------------------------------------------------------ tensor models


def python_onnx_config(
    name: str,
    options: RepositoryOptions,
    graph: GraphSignature,
    pad_values: dict[str, int],
    label_file: str = "",
    max_sequence: int | None = None,
) -> mc.ModelConfig:
    """The local target's tensor model: onnxruntime inside the Python backend, ragged batching.

    `max_sequence` (the tokenizer's max length) makes the model refuse longer sequences, as a TensorRT
    profile would on the nvidia target, instead of running lengths the spec never verified."""
    config = _base(name, options)
    config.backend = PYTHON_BACKEND
    _io(graph.inputs, config.input, ragged=True)
    _io(graph.outputs, config.output, label_file=label_file)
    _batching(config, options)
    _cpu_instances(config, options.instances)
    _version_policy(config, options)
    ragged_inputs = {
        t.name: pad_values.get(t.name, 0) for t in graph.inputs if len(t.dims) >= 2 and t.dims[1] == -1
    }
    ragged_outputs = [t.name for t in graph.outputs if len(t.dims) >= 3 and t.dims[1] == -1]
    _param(config, "model_file", "model.onnx")
    _param(config, "intra_op_threads", options.intra_op_threads)
    _param(config, "inter_op_threads", 1)
    _param(config, "ragged_inputs", json.dumps(ragged_inputs, sort_keys=True))
    _param(config, "ragged_outputs", ",".join(ragged_outputs))
    if max_sequence and ragged_inputs:
        _param(config, "max_sequence", max_sequence)
    return config


def onnxruntime_config(
    name: str, options: RepositoryOptions, graph: GraphSignature, gpu: bool, label_file: str = ""
) -> mc.ModelConfig:
    """The NVIDIA container's onnxruntime backend, on CPU (cpu-container) or GPU (nvidia fallback)."""
    config = _base(name, options)
    config.platform = ONNXRUNTIME_PLATFORM
    config.default_model_filename = "model.onnx"
    _io(graph.inputs, config.input)
    _io(graph.outputs, config.output, label_file=label_file)
    _batching(config, options)
    if gpu:
        config.instance_group.add(
            count=options.instances, kind=mc.ModelInstanceGroup.KIND_GPU, gpus=options.gpus
        )
    else:
        _cpu_instances(config, options.instances)
    _version_policy(config, options)
    if options.intra_op_threads:
        _param(config, "intra_op_thread_count", options.intra_op_threads)
    return config


@dataclass(frozen=True)
class EngineLayout:
    """What the tensorrt_plan config needs from the engines of one model."""

    profiles: tuple[Profile, ...]
    cc_filenames: dict[str, str]  # compute capability -> plan file ({} when one engine serves all)
    default_filename: str = "model.plan"
    # One instance group per profile only when every profile takes every shape the repository sends
    # (profiles as extra execution contexts); profiles that split the range stay with one group, and
    # the backend picks the profile that fits each batch.
    bind_profiles: bool = False


def _opt_batch(profile: Profile) -> int:
    return max(opt[0] for _, opt, _ in profile.values())


def tensorrt_config(
    name: str,
    options: RepositoryOptions,
    graph: GraphSignature,
    engines: EngineLayout,
    graph_shapes: Sequence[tuple[int, int]] = (),
    label_file: str = "",
) -> mc.ModelConfig:
    """tensorrt_plan on GPU; several profiles -> preferred batch sizes at their opt batch."""
    config = _base(name, options)
    config.platform = TENSORRT_PLATFORM
    if engines.cc_filenames:
        config.cc_model_filenames.update(engines.cc_filenames)
    else:
        config.default_model_filename = engines.default_filename
    _io(graph.inputs, config.input)
    _io(graph.outputs, config.output, label_file=label_file)
    multi = len(engines.profiles) > 1
    preferred = sorted({_opt_batch(p) for p in engines.profiles if _opt_batch(p) <= options.max_batch_size})
    _batching(config, options, preferred if multi else ())
    groups = range(len(engines.profiles)) if multi and engines.bind_profiles else [None]
    for index in groups:
        group = config.instance_group.add(
            count=options.instances, kind=mc.ModelInstanceGroup.KIND_GPU, gpus=options.gpus
        )
        if index is not None:
            group.profile.append(str(index))
    _version_policy(config, options)
    if options.cuda_graphs:
        cuda = config.optimization.cuda
        cuda.graphs = True
        for batch, sequence in graph_shapes:
            spec = cuda.graph_spec.add(batch_size=batch)
            for tensor in graph.inputs:
                dims = [sequence if d == -1 else d for d in tensor.dims[1:]]
                spec.input[tensor.name].dim.extend(dims)
    return config


# ------------------------------------------------------------------------------------------------ ensemble


@dataclass(frozen=True)
class Step:
    model: str
    input_map: dict[str, str]  # the step model's input -> ensemble tensor
    output_map: dict[str, str]  # the step model's output -> ensemble tensor


def ensemble_config(
    name: str,
    options: RepositoryOptions,
    inputs: Sequence[tuple[str, int, list[int]] | tuple[str, int, list[int], bool]],  # (..., optional)
    outputs: Sequence[tuple[str, int, list[int]]],
    steps: Sequence[Step],
) -> mc.ModelConfig:
    config = _base(name, options)
    config.platform = ENSEMBLE_PLATFORM
    for tensor_name, data_type, dims, *optional in inputs:
        config.input.add(
            name=tensor_name, data_type=data_type, dims=dims, optional=bool(optional and optional[0])
        )
    for tensor_name, data_type, dims in outputs:
        config.output.add(name=tensor_name, data_type=data_type, dims=dims)
    for step in steps:
        entry = config.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
        entry.input_map.update(step.input_map)
        entry.output_map.update(step.output_map)
    if options.response_cache:
        config.response_cache.enable = True
    return config
