"""Structural checks of a TensorRT-LLM backend repository (no GPU needed, nothing is loaded).

- the tensorrt_llm model: decoupled, the mandatory parameters set (no `${...}` template placeholder
  left), a known batching strategy, a positive beam width, its build record agreeing with gpt_model_path,
  and a warning while no engine sits in its version directory;
- the ensemble in front of it: the generation contract (text_input, max_tokens, ... -> text_output with
  the contract's types) and `stream` reaching the backend's `streaming` input.

Each finding is (file, message, fix, severity); validate.py turns them into Problems.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository.trtllm import (
    BATCHING_STRATEGIES,
    BUILD_FILE,
    CONTRACT_INPUTS,
    REQUIRED_PARAMETERS,
    TEXT_OUTPUT,
    TrtllmBuild,
)

Finding = tuple[str, str, str, str]  # file (relative to the model directory), message, fix, severity
_REGENERATE = "regenerate: triton-bundle repo generate SPEC --target trtllm"


def _type(value: int) -> str:
    return mc.DataType.Name(value)


def check_tensorrtllm(directory: Path, config: mc.ModelConfig) -> list[Finding]:
    params = {key: value.string_value for key, value in config.parameters.items()}
    found: list[Finding] = []
    if not config.model_transaction_policy.decoupled:
        found.append(("config.pbtxt", "not decoupled: tokens cannot stream", "set decoupled: true", "error"))
    for key in REQUIRED_PARAMETERS:
        value = params.get(key, "")
        if not value or "${" in value:
            why = "missing" if not value else f"still the template placeholder {value!r}"
            found.append(("config.pbtxt", f"parameter '{key}' is {why}", _REGENERATE, "error"))
    strategy = params.get("gpt_model_type", "")
    if strategy and "${" not in strategy and strategy not in BATCHING_STRATEGIES:
        found.append(
            (
                "config.pbtxt",
                f"gpt_model_type '{strategy}' is not in-flight batching",
                f"use one of {BATCHING_STRATEGIES}",
                "error",
            )
        )
    beams = params.get("max_beam_width", "")
    if beams and "${" not in beams and not (beams.isdigit() and int(beams) >= 1):
        found.append(
            ("config.pbtxt", f"max_beam_width '{beams}' is not a positive integer", "set it to 1", "error")
        )
    found += _check_build(directory, params.get("gpt_model_path", ""))
    return found


def _check_build(directory: Path, engine_path: str) -> list[Finding]:
    path = directory / BUILD_FILE
    if not path.is_file():
        return [(BUILD_FILE, "no engine build record", _REGENERATE, "error")]
    try:
        build = TrtllmBuild.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        return [(BUILD_FILE, f"build record does not parse: {exc.errors()[0]['msg']}", _REGENERATE, "error")]
    found: list[Finding] = []
    if engine_path and build.engine_dir != engine_path:
        found.append(
            (
                "config.pbtxt",
                f"gpt_model_path {engine_path} differs from the built engine_dir {build.engine_dir}",
                _REGENERATE,
                "error",
            )
        )
    version = directory / "1"
    if not any(version.glob("*.engine")):
        found.append(
            (
                "1/",
                "no engine yet (rank*.engine)",
                "build it: docker/trtllm/build-engine.sh (see the README)",
                "warning",
            )
        )
    return found


def check_generation_ensemble(config: mc.ModelConfig, engine_step: mc.ModelEnsembling.Step) -> list[Finding]:
    """The ensemble clients call: the contract's names and types, and streaming wired through."""
    found: list[Finding] = []
    inputs = {i.name: i for i in config.input}
    for name, (dtype, _dims, optional) in CONTRACT_INPUTS.items():
        tensor = inputs.get(name)
        if tensor is None:
            if not optional:
                found.append(("config.pbtxt", f"contract input '{name}' is missing", _REGENERATE, "error"))
            continue
        if tensor.data_type != dtype:
            message = f"contract input '{name}' is {_type(tensor.data_type)}; clients send {_type(dtype)}"
            found.append(("config.pbtxt", message, _REGENERATE, "error"))
    outputs = {o.name: o for o in config.output}
    if TEXT_OUTPUT not in outputs or outputs[TEXT_OUTPUT].data_type != mc.DataType.TYPE_STRING:
        found.append(("config.pbtxt", f"no TYPE_STRING output '{TEXT_OUTPUT}'", _REGENERATE, "error"))
    if engine_step.input_map.get("streaming") != "stream":
        message = f"the engine's 'streaming' input is not wired to 'stream' (step '{engine_step.model_name}')"
        found.append(("config.pbtxt", message, 'input_map { key: "streaming" value: "stream" }', "error"))
    return found


def check_llmapi(directory: Path) -> list[Finding]:
    """The LLM-API model: its model.yaml names a checkpoint and streams (decoupled); NVIDIA's files present."""
    import yaml

    from triton_bundle.repository.trtllm_llmapi import MODEL_YAML, NVIDIA_FILES

    path = directory / "1" / MODEL_YAML
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        return [(f"1/{MODEL_YAML}", f"does not parse: {exc}", _REGENERATE, "error")]
    found: list[Finding] = []
    triton = settings.get("triton_config") or {}
    if not settings.get("model"):
        found.append((f"1/{MODEL_YAML}", "no 'model' (the checkpoint to load)", _REGENERATE, "error"))
    if triton.get("decoupled") is not True:
        found.append(
            (
                f"1/{MODEL_YAML}",
                "triton_config.decoupled is not true: tokens cannot stream",
                _REGENERATE,
                "error",
            )
        )
    if triton.get("max_batch_size") != 0:
        message = f"triton_config.max_batch_size is {triton.get('max_batch_size')!r}; the ensemble in front expects 0"
        found.append((f"1/{MODEL_YAML}", message, _REGENERATE, "error"))
    missing = [name for name in NVIDIA_FILES if not (directory / "1" / name).is_file()]
    if missing:
        fix = "copy them from TensorRT-LLM triton_backend/all_models/llmapi/tensorrt_llm/1/ (docker/trtllm/build-engine.sh)"
        found.append(("1/", f"NVIDIA's {', '.join(missing)} not in place yet", fix, "warning"))
    return found
