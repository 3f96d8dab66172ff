"""The NVIDIA route for decoders: a Triton TensorRT-LLM backend repository from the same spec.

Layout (the `inflight_batcher_llm` model set of NVIDIA/TensorRT-LLM `triton_backend/all_models`, the
layout TensorRT-LLM 1.x documents for engines built with `trtllm-build`):

    <name>                  ensemble, the client contract: text_input, max_tokens, temperature, top_k,
                            top_p, seed, stop, stream -> text_output (the names Triton's generate endpoint
                            and OpenAI-compatible frontend expect; the same as the local decoder's)
    <name>_preprocessing    Python: tokenizer.json -> input ids, lengths, stop-word ids, end / pad ids
    <name>_tensorrt_llm     backend "tensorrtllm", decoupled, inflight_fused_batching; the engine that
                            `trtllm-build` writes lands in its version directory 1/
    <name>_postprocessing   Python: token ids -> text (each streamed response decodes its new tokens)

Configs are model_config_pb2 objects with the template's tensor and parameter names; only the inputs
this contract uses are declared. `build.json` in the tensorrt_llm model directory records the
checkpoint-convert and `trtllm-build` commands for the checkpoint's family (docker/trtllm/ runs them).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, computed_field
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository.sources import RepositoryError
from triton_bundle.spec import ModelSpec

TRTLLM_BACKEND = "tensorrtllm"
BUILD_FILE = "build.json"
TOKENIZER_FILE = "tokenizer.json"
# Parameters the tensorrt_llm model cannot start without (NVIDIA's model_config docs, "mandatory").
REQUIRED_PARAMETERS = ("gpt_model_type", "gpt_model_path", "max_beam_width", "batch_scheduler_policy")
BATCHING_STRATEGIES = ("inflight_fused_batching", "inflight_batching")
# checkpoint config.json model_type -> TensorRT-LLM example that converts it (examples/models/core/...)
CONVERT_SCRIPTS = {
    "gpt2": "examples/models/core/gpt/convert_checkpoint.py",
    "llama": "examples/models/core/llama/convert_checkpoint.py",
    "mistral": "examples/models/core/llama/convert_checkpoint.py",
}
# The client contract: ensemble input -> (type, dims, optional, preprocessing or tensorrt_llm input).
_T = mc.DataType
CONTRACT_INPUTS: dict[str, tuple[int, list[int], bool]] = {
    "text_input": (_T.TYPE_STRING, [1], False),
    "max_tokens": (_T.TYPE_INT32, [1], False),
    "temperature": (_T.TYPE_FP32, [1], True),
    "top_k": (_T.TYPE_INT32, [1], True),
    "top_p": (_T.TYPE_FP32, [1], True),
    "seed": (_T.TYPE_UINT64, [1], True),
    "stop": (_T.TYPE_STRING, [-1], True),
    "stream": (_T.TYPE_BOOL, [1], True),
}
TEXT_OUTPUT = "text_output"
# Sampling inputs pass straight to the tensorrt_llm model under the backend's own names.
SAMPLING_INPUTS = {
    "runtime_top_k": "top_k",
    "runtime_top_p": "top_p",
    "temperature": "temperature",
    "seed": "seed",
}


def preprocessing_model(name: str) -> str:
    return f"{name}_preprocessing"


def tensorrt_llm_model(name: str) -> str:
    return f"{name}_tensorrt_llm"


def postprocessing_model(name: str) -> str:
    return f"{name}_postprocessing"


class TrtllmBuild(BaseModel):
    """What the engine is built for and the two commands that build it (run in the TensorRT-LLM image)."""

    family: str = Field(description="the checkpoint's model_type")
    dtype: str
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_beam_width: int = 1
    convert_script: str = Field(description="in a TensorRT-LLM checkout at the image's tensorrt_llm version")
    engine_dir: str = Field(description="where Triton reads the engine inside the container")

    @computed_field  # written into build.json: docker/trtllm/build-engine.sh runs them as they are
    @property
    def commands(self) -> list[str]:
        """Checkpoint convert, then trtllm-build; $CHECKPOINT, $WORK, $TENSORRT_LLM_DIR are the script's."""
        convert = (
            f"python3 $TENSORRT_LLM_DIR/{self.convert_script} --model_dir $CHECKPOINT "
            f"--dtype {self.dtype} --output_dir $WORK/trtllm_checkpoint"
        )
        build = (
            f"trtllm-build --checkpoint_dir $WORK/trtllm_checkpoint --output_dir {self.engine_dir} "
            f"--gemm_plugin auto --max_batch_size {self.max_batch_size} --max_input_len {self.max_input_len} "
            f"--max_seq_len {self.max_seq_len} --max_beam_width {self.max_beam_width}"
        )
        return [convert, build]


def _checkpoint_config(checkpoint: Path) -> dict:
    path = checkpoint / "config.json"
    if not path.is_file():
        raise RepositoryError(
            f"{checkpoint}: no config.json; the TensorRT-LLM route needs a Hugging Face checkpoint"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def build_plan(spec: ModelSpec, checkpoint: Path) -> TrtllmBuild:
    """Engine limits from the spec's generation section; the convert script from the checkpoint's family."""
    family = str(_checkpoint_config(checkpoint).get("model_type", ""))
    if family not in CONVERT_SCRIPTS:
        raise RepositoryError(
            f"{checkpoint}: model_type '{family}' has no TensorRT-LLM checkpoint converter here; "
            f"supported: {sorted(CONVERT_SCRIPTS)}"
        )
    gen, trt = spec.generation, spec.repository.trtllm
    return TrtllmBuild(
        family=family,
        dtype=trt.dtype,
        max_batch_size=gen.max_sequences,
        max_input_len=gen.max_context - gen.max_new_tokens,
        max_seq_len=gen.max_context,
        convert_script=CONVERT_SCRIPTS[family],
        engine_dir=f"{trt.model_root.rstrip('/')}/{tensorrt_llm_model(spec.name)}/1",
    )


def special_ids(checkpoint: Path) -> tuple[int, int]:
    """(end_id, pad_id) from the checkpoint's config / generation_config: the ids the engine stops on."""
    config = _checkpoint_config(checkpoint)
    generation = checkpoint / "generation_config.json"
    if generation.is_file():
        config = {**config, **json.loads(generation.read_text(encoding="utf-8"))}
    end = config.get("eos_token_id")
    end = end[0] if isinstance(end, list) else end
    if end is None:
        raise RepositoryError(f"{checkpoint}: no eos_token_id in config.json; the engine needs an end id")
    pad = config.get("pad_token_id")
    return int(end), int(end if pad is None else pad)
