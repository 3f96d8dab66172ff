#!/usr/bin/env bash
# One-shot, on the GPU type that will serve: build a TensorRT engine per variant with this container's
# TensorRT, write the nvidia-target Triton repository, then run the same preflight Triton runs.
# Re-running replaces the engines and the repository (that is what a rebuild is for).
#
#   SPEC              the model spec, relative to the working directory (the mounted checkout)
#   VARIANTS          extra variants to build (fp32 fp16 int8), besides the one the spec serves
#                     (repository.precision), which is always built
#   MODEL_NAME        optional: must equal the spec's name (compose uses it to mount the repository)
#   MODEL_REPOSITORY  where the Triton repository is written (default model_repository/nvidia/<name>)
# The spec's ONNX stages (export, precision) must have run: their artifacts are under
# artifacts/<name>, where the engines are added.
set -euo pipefail

spec="${SPEC:?set SPEC to the spec path relative to the checkout, e.g. examples/minilm-intent/spec.yaml}"
read -r name served < <(python3 -c 'import sys
from triton_bundle.spec import load_spec
spec = load_spec(sys.argv[1])
print(spec.name, spec.repository.precision)' "${spec}") || true
if [[ -z "${name:-}" ]]; then
  echo "error: could not read the spec ${spec} (see above)" >&2
  exit 2
fi
if [[ -n "${MODEL_NAME:-}" && "${MODEL_NAME}" != "${name}" ]]; then
  echo "error: MODEL_NAME=${MODEL_NAME} but ${spec} names the model '${name}'; set MODEL_NAME=${name}" >&2
  exit 2
fi
repository="${MODEL_REPOSITORY:-model_repository/nvidia/${name}}"

read -r -a extra <<< "${VARIANTS:-}"
variants=("${served}")
for variant in "${extra[@]}"; do
  [[ " ${variants[*]} " == *" ${variant} "* ]] || variants+=("${variant}")
done
for variant in "${variants[@]}"; do
  echo "build-engines: ${name} ${variant} with the TensorRT of the ${TRITON_RELEASE:-?} release" >&2
  triton-bundle build "${spec}" --variant "${variant}" --workdir "artifacts/${name}" --force
done
# Extra arguments go to `repo generate` (e.g. --version fp16 --version int8 for side-by-side versions).
triton-bundle repo generate "${spec}" --target nvidia --workdir "artifacts/${name}" --out "${repository}" \
  --force "$@"
python3 -m triton_bundle.serving.preflight_cli --repository "${repository}"
