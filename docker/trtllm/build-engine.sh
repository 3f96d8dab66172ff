#!/usr/bin/env bash
# Build the TensorRT-LLM engine that a `triton-bundle repo generate SPEC --target trtllm` repository
# expects, inside nvcr.io/nvidia/tritonserver:<TRITON_RELEASE>-trtllm-python-py3 on an NVIDIA host:
#   docker compose -f docker/compose.yaml --profile trtllm run --rm trtllm-build
# Engine flavor: it runs the two commands the generator recorded in <name>_tensorrt_llm/build.json: the
# family's checkpoint converter (TensorRT-LLM examples/models/core/<family>/convert_checkpoint.py), then
# trtllm-build, whose engine lands in <name>_tensorrt_llm/1/ where the config's gpt_model_path points.
# LLM-API flavor (1/model.yaml): it copies NVIDIA's model.py and helpers.py of the image's version there.
#
#   MODEL_REPOSITORY   the generated repository, mounted where Triton reads it (default /models)
#   CHECKPOINT         the Hugging Face checkpoint directory (default /checkpoint)
#   TENSORRT_LLM_DIR   a TensorRT-LLM checkout at this image's tensorrt_llm version (its examples hold the
#                      converters); default: cloned at that version (needs network) into $WORK
#   WORK               scratch for the converted checkpoint (default /tmp/trtllm-build)
set -euo pipefail

repository="${MODEL_REPOSITORY:-/models}"
export CHECKPOINT="${CHECKPOINT:-/checkpoint}"
export WORK="${WORK:-/tmp/trtllm-build}"

shopt -s nullglob
records=("${repository}"/*_tensorrt_llm/build.json)
llmapi=("${repository}"/*_tensorrt_llm/1/model.yaml)
if ((${#records[@]} + ${#llmapi[@]} != 1)); then
  echo "error: expected one <name>_tensorrt_llm model (build.json or 1/model.yaml) under ${repository}," \
    "found $((${#records[@]} + ${#llmapi[@]})) (generate it: triton-bundle repo generate SPEC --target trtllm)" >&2
  exit 2
fi
if [[ ! -f "${CHECKPOINT}/config.json" ]]; then
  echo "error: ${CHECKPOINT} holds no Hugging Face checkpoint (config.json); mount it there or set CHECKPOINT" >&2
  exit 2
fi
mkdir -p "${WORK}"
if [[ -z "${TENSORRT_LLM_DIR:-}" ]]; then
  # Converters and model files must match the tensorrt_llm this image ships: clone that exact release.
  version="$(python3 -c 'import tensorrt_llm; print(tensorrt_llm.__version__)')"
  TENSORRT_LLM_DIR="${WORK}/TensorRT-LLM"
  if [[ ! -d "${TENSORRT_LLM_DIR}" ]]; then
    git clone --quiet --depth 1 --branch "v${version}" https://github.com/NVIDIA/TensorRT-LLM.git "${TENSORRT_LLM_DIR}"
  fi
fi
export TENSORRT_LLM_DIR

if ((${#llmapi[@]} == 1)); then
  # LLM-API flavor: nothing to build; NVIDIA's model files run tensorrt_llm.LLM on the checkpoint.
  target="$(dirname "${llmapi[0]}")"
  for file in model.py helpers.py; do
    cp "${TENSORRT_LLM_DIR}/triton_backend/all_models/llmapi/tensorrt_llm/1/${file}" "${target}/${file}"
  done
  echo "LLM-API model files copied to ${target}; serve with the checkpoint mounted as model.yaml says" >&2
  exit 0
fi

# The commands reference $CHECKPOINT, $WORK and $TENSORRT_LLM_DIR: each runs in a shell that expands them.
python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["commands"]))' "${records[0]}" |
  while IFS= read -r command; do
    echo "+ ${command}" >&2
    bash -c "${command}"
  done
echo "engine written to $(dirname "${records[0]}")/1" >&2
