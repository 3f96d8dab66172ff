"""config.pbtxt builders of the TensorRT-LLM repository (model_config_pb2, the template's names)."""

from __future__ import annotations

from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository.configs import ENSEMBLE_PLATFORM, PYTHON_BACKEND, Step
from triton_bundle.repository.layout import ModelFiles, python_model_source
from triton_bundle.repository.pipelines import RepositoryPlan
from triton_bundle.repository.sources import RepositoryError, tokenizer_source
from triton_bundle.repository.trtllm import (
    BUILD_FILE,
    CONTRACT_INPUTS,
    SAMPLING_INPUTS,
    TEXT_OUTPUT,
    TOKENIZER_FILE,
    TRTLLM_BACKEND,
    TrtllmBuild,
    build_plan,
    postprocessing_model,
    preprocessing_model,
    special_ids,
    tensorrt_llm_model,
)
from triton_bundle.spec import ModelSpec

_T = mc.DataType


def _io(repeated, name: str, dtype: int, dims: list[int], *, optional=False, scalar=False, ragged=False):
    entry = repeated.add(name=name, data_type=dtype, dims=dims)
    if optional:
        entry.optional = True
    if ragged:
        entry.allow_ragged_batch = True
    if scalar:  # per-request scalars: [1] on the wire, [] inside the backend
        entry.reshape.SetInParent()
    return entry


def _params(config: mc.ModelConfig, values: dict[str, object]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def _cpu(config: mc.ModelConfig, count: int = 1) -> None:
    config.instance_group.add(count=count, kind=mc.ModelInstanceGroup.KIND_CPU)


def preprocessing_config(spec: ModelSpec, build: TrtllmBuild, end_id: int, pad_id: int) -> mc.ModelConfig:
    config = mc.ModelConfig(name=preprocessing_model(spec.name), backend=PYTHON_BACKEND)
    config.max_batch_size = build.max_batch_size
    config.dynamic_batching.max_queue_delay_microseconds = 0  # tokenizing waits for nobody
    _io(config.input, "QUERY", _T.TYPE_STRING, [1])
    _io(config.input, "REQUEST_OUTPUT_LEN", _T.TYPE_INT32, [1])
    _io(config.input, "STOP_WORDS_DICT", _T.TYPE_STRING, [-1], optional=True)
    for name, dims in (("INPUT_ID", [-1]), ("REQUEST_INPUT_LEN", [1]), ("REQUEST_OUTPUT_LEN", [-1])):
        _io(config.output, name, _T.TYPE_INT32, dims)
    for name, dims in (("STOP_WORDS_IDS", [2, -1]), ("OUT_END_ID", [1]), ("OUT_PAD_ID", [1])):
        _io(config.output, name, _T.TYPE_INT32, dims)
    _params(
        config,
        {
            "tokenizer_file": TOKENIZER_FILE,
            "end_id": end_id,
            "pad_id": pad_id,
            "max_input_len": build.max_input_len,
            "max_new_tokens": spec.generation.max_new_tokens,
        },
    )
    _cpu(config)
    return config


def tensorrt_llm_config(spec: ModelSpec, build: TrtllmBuild) -> mc.ModelConfig:
    """The engine runner: decoupled (one response per token when streaming), in-flight batching."""
    trt = spec.repository.trtllm
    config = mc.ModelConfig(name=tensorrt_llm_model(spec.name), backend=TRTLLM_BACKEND)
    config.max_batch_size = build.max_batch_size
    config.model_transaction_policy.decoupled = True
    # In-flight batching schedules per decode step; Triton's queue only hands requests over.
    config.dynamic_batching.max_queue_delay_microseconds = 0
    _io(config.input, "input_ids", _T.TYPE_INT32, [-1], ragged=True)
    _io(config.input, "input_lengths", _T.TYPE_INT32, [1], scalar=True)
    _io(config.input, "request_output_len", _T.TYPE_INT32, [1], scalar=True)
    for name in ("end_id", "pad_id"):
        _io(config.input, name, _T.TYPE_INT32, [1], optional=True, scalar=True)
    _io(config.input, "stop_words_list", _T.TYPE_INT32, [2, -1], optional=True, ragged=True)
    for name, contract_name in SAMPLING_INPUTS.items():
        _io(config.input, name, CONTRACT_INPUTS[contract_name][0], [1], optional=True, scalar=True)
    _io(config.input, "streaming", _T.TYPE_BOOL, [1], optional=True, scalar=True)
    _io(config.output, "output_ids", _T.TYPE_INT32, [-1, -1])
    _io(config.output, "sequence_length", _T.TYPE_INT32, [-1])
    _params(
        config,
        {
            "gpt_model_type": "inflight_fused_batching",
            "gpt_model_path": build.engine_dir,
            "max_beam_width": build.max_beam_width,
            "batch_scheduler_policy": trt.batch_scheduler_policy,
            "kv_cache_free_gpu_mem_fraction": trt.kv_cache_free_gpu_mem_fraction,
            "exclude_input_in_output": "true",  # text_output is the continuation, as on the local route
            "enable_chunked_context": "false",
            "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        },
    )
    # The backend runs the engine on the GPUs itself; its Triton instance is a CPU-side scheduler.
    _cpu(config)
    return config


def postprocessing_config(spec: ModelSpec, build: TrtllmBuild) -> mc.ModelConfig:
    config = mc.ModelConfig(name=postprocessing_model(spec.name), backend=PYTHON_BACKEND)
    config.max_batch_size = build.max_batch_size
    config.dynamic_batching.max_queue_delay_microseconds = 0
    _io(config.input, "TOKENS_BATCH", _T.TYPE_INT32, [-1, -1])
    _io(config.input, "SEQUENCE_LENGTH", _T.TYPE_INT32, [-1])
    _io(config.output, "OUTPUT", _T.TYPE_STRING, [-1])
    _params(config, {"tokenizer_file": TOKENIZER_FILE, "skip_special_tokens": "true"})
    _cpu(config)
    return config


def _steps(spec: ModelSpec) -> list[Step]:
    name = spec.name
    pre = Step(
        preprocessing_model(name),
        {"QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens", "STOP_WORDS_DICT": "stop"},
        {
            "INPUT_ID": "_INPUT_ID",
            "REQUEST_INPUT_LEN": "_REQUEST_INPUT_LEN",
            "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN",
            "STOP_WORDS_IDS": "_STOP_WORDS_IDS",
            "OUT_END_ID": "_END_ID",
            "OUT_PAD_ID": "_PAD_ID",
        },
    )
    engine_inputs = {
        "input_ids": "_INPUT_ID",
        "input_lengths": "_REQUEST_INPUT_LEN",
        "request_output_len": "_REQUEST_OUTPUT_LEN",
        "end_id": "_END_ID",
        "pad_id": "_PAD_ID",
        "stop_words_list": "_STOP_WORDS_IDS",
        "streaming": "stream",
        **SAMPLING_INPUTS,
    }
    engine = Step(
        tensorrt_llm_model(name),
        engine_inputs,
        {"output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH"},
    )
    post = Step(
        postprocessing_model(name),
        {"TOKENS_BATCH": "_TOKENS_BATCH", "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH"},
        {"OUTPUT": TEXT_OUTPUT},
    )
    return [pre, engine, post]


def ensemble_config(spec: ModelSpec, build: TrtllmBuild) -> mc.ModelConfig:
    """What clients call by the spec's name: the generation contract, streamed when `stream` is true."""
    config = mc.ModelConfig(name=spec.name, platform=ENSEMBLE_PLATFORM, max_batch_size=build.max_batch_size)
    for tensor, (dtype, dims, optional) in CONTRACT_INPUTS.items():
        _io(config.input, tensor, dtype, dims, optional=optional)
    _io(config.output, TEXT_OUTPUT, _T.TYPE_STRING, [-1])
    for step in _steps(spec):
        entry = config.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
        entry.input_map.update(step.input_map)
        entry.output_map.update(step.output_map)
    return config


def trtllm_plan(spec: ModelSpec, checkpoint: Path | None) -> RepositoryPlan:
    """The four models of the TensorRT-LLM route, with the tokenizer and the engine build record."""
    if spec.task != "text-generation":
        raise RepositoryError(
            f"target 'trtllm' serves decoders (task text-generation); '{spec.name}' is {spec.task}: "
            "use --target nvidia for it"
        )
    tokenizer = tokenizer_source(checkpoint)  # refuses a missing checkpoint with the command that makes one
    assert checkpoint is not None
    if spec.repository.trtllm.flavor == "llmapi":
        from triton_bundle.repository.trtllm_llmapi import llmapi_plan

        return llmapi_plan(spec, checkpoint)
    build = build_plan(spec, checkpoint)
    end_id, pad_id = special_ids(checkpoint)
    tok_files = {f"1/{TOKENIZER_FILE}": tokenizer.tokenizer_json}
    models = [
        ModelFiles(ensemble_config(spec, build)),
        ModelFiles(
            preprocessing_config(spec, build, end_id, pad_id),
            {"1/model.py": python_model_source("trtllm_preprocess"), **tok_files},
        ),
        ModelFiles(tensorrt_llm_config(spec, build), {BUILD_FILE: build.model_dump_json(indent=2) + "\n"}),
        ModelFiles(
            postprocessing_config(spec, build),
            {"1/model.py": python_model_source("trtllm_postprocess"), **tok_files},
        ),
    ]
    names = {
        "ensemble": spec.name,
        "preprocess": preprocessing_model(spec.name),
        "tensor": tensorrt_llm_model(spec.name),
        "postprocess": postprocessing_model(spec.name),
    }
    notes = [
        f"the engine is not built here: run docker/trtllm/build-engine.sh (checkpoint family '{build.family}', "
        f"{build.dtype}, batch {build.max_batch_size}, input {build.max_input_len}, sequence {build.max_seq_len}) "
        f"in nvcr.io/nvidia/tritonserver:{spec.engine.triton_image_tag}-trtllm-python-py3"
    ]
    return RepositoryPlan(models=models, model_names=names, notes=notes)
