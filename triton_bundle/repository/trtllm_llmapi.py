"""The TensorRT-LLM LLM-API flavor (`repository.trtllm.flavor: llmapi`): no engine build.

TensorRT-LLM's `triton_backend/all_models/llmapi/tensorrt_llm` model (a Python-backend model that runs
`tensorrt_llm.LLM` with the PyTorch backend on the Hugging Face checkpoint) is the route NVIDIA's 2026
Triton docs recommend; the engine-build workflow is marked deprecated there. Its tensor names differ from
the client contract (`sampling_param_max_tokens`, `streaming`, ...), so an ensemble named after the spec
maps the contract onto them. Its `max_batch_size` and `decoupled` live in `1/model.yaml`
(`triton_config`), not in config.pbtxt. NVIDIA's `model.py` / `helpers.py` are copied in on the GPU host
from a TensorRT-LLM checkout at the image's version (docker/trtllm/build-engine.sh).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository.configs import ENSEMBLE_PLATFORM, PYTHON_BACKEND
from triton_bundle.repository.layout import ModelFiles
from triton_bundle.repository.pipelines import RepositoryPlan
from triton_bundle.repository.trtllm import CONTRACT_INPUTS, TEXT_OUTPUT, tensorrt_llm_model
from triton_bundle.spec import ModelSpec

MODEL_YAML = "model.yaml"
NVIDIA_FILES = ("model.py", "helpers.py")  # from triton_backend/all_models/llmapi/tensorrt_llm/1/
_T = mc.DataType
# contract input -> the LLM-API model's input
LLMAPI_INPUTS = {
    "text_input": "text_input",
    "max_tokens": "sampling_param_max_tokens",
    "temperature": "sampling_param_temperature",
    "top_k": "sampling_param_top_k",
    "top_p": "sampling_param_top_p",
    "seed": "sampling_param_seed",
    "stop": "sampling_param_stop",
    "stream": "streaming",
}


def model_yaml(spec: ModelSpec) -> dict:
    """tensorrt_llm.LLM arguments plus the Triton settings model.py applies (auto_complete_config)."""
    gen, trt = spec.generation, spec.repository.trtllm
    return {
        "model": trt.checkpoint_mount,
        "backend": "pytorch",
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "dtype": trt.dtype,
        "max_batch_size": gen.max_sequences,
        "max_seq_len": gen.max_context,
        "kv_cache_config": {"free_gpu_memory_fraction": trt.kv_cache_free_gpu_mem_fraction},
        # Requests arrive one per Triton call (max_batch_size 0); the LLM API batches them in flight.
        "triton_config": {"max_batch_size": 0, "decoupled": True},
    }


def _llm_config(spec: ModelSpec) -> mc.ModelConfig:
    config = mc.ModelConfig(name=tensorrt_llm_model(spec.name), backend=PYTHON_BACKEND)
    for contract_name, name in LLMAPI_INPUTS.items():
        dtype, _dims, _optional = CONTRACT_INPUTS[contract_name]
        dims = [-1] if dtype == _T.TYPE_STRING else [1]
        config.input.add(name=name, data_type=dtype, dims=dims, optional=name != "text_input")
    config.output.add(name=TEXT_OUTPUT, data_type=_T.TYPE_STRING, dims=[-1])
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    return config


def _ensemble(spec: ModelSpec) -> mc.ModelConfig:
    config = mc.ModelConfig(name=spec.name, platform=ENSEMBLE_PLATFORM, max_batch_size=0)
    for name, (dtype, dims, optional) in CONTRACT_INPUTS.items():
        entry = config.input.add(name=name, data_type=dtype, dims=dims)
        if optional:
            entry.optional = True
    config.output.add(name=TEXT_OUTPUT, data_type=_T.TYPE_STRING, dims=[-1])
    step = config.ensemble_scheduling.step.add(model_name=tensorrt_llm_model(spec.name), model_version=-1)
    step.input_map.update({llm: contract for contract, llm in LLMAPI_INPUTS.items()})
    step.output_map[TEXT_OUTPUT] = TEXT_OUTPUT
    return config


def llmapi_plan(spec: ModelSpec, checkpoint: Path) -> RepositoryPlan:
    text = yaml.safe_dump(model_yaml(spec), sort_keys=False)
    models = [
        ModelFiles(_ensemble(spec)),
        ModelFiles(_llm_config(spec), {f"1/{MODEL_YAML}": text}),
    ]
    names = {"ensemble": spec.name, "tensor": tensorrt_llm_model(spec.name)}
    notes = [
        f"LLM-API flavor: copy NVIDIA's model.py and helpers.py into {tensorrt_llm_model(spec.name)}/1/ and mount "
        f"the checkpoint ({checkpoint}) at {spec.repository.trtllm.checkpoint_mount}: docker/trtllm/build-engine.sh "
        f"in nvcr.io/nvidia/tritonserver:{spec.engine.triton_image_tag}-trtllm-python-py3 does the copy"
    ]
    return RepositoryPlan(models=models, model_names=names, notes=notes)
