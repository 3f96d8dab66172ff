#!/usr/bin/env bash
# Triton's entrypoint: check the engines against this container's TensorRT and GPUs, then exec
# tritonserver with the admin APIs (model repository control, shared memory, statistics, trace and
# logging settings) behind a key read at run time, never baked into the image. Health, metadata,
# model config and inference stay open: probes and clients need them.
#
#   MODEL_REPOSITORY       repository path (default /models; mount it read-only)
#   MODEL_CONTROL_MODE     none (default: load everything at start) or explicit (pass --load-model=NAME)
#   TRITON_ADMIN_KEY_FILE  file holding the admin key (default /run/secrets/triton_admin_key)
#   TRITON_ADMIN_KEY       the key itself, when no file is mounted
#   TRITONSERVER           the server binary (default: tritonserver on PATH)
#   ENTRYPOINT_DRY_RUN=1   print the tritonserver arguments, one per line, instead of starting it
#   SKIP_PREFLIGHT=1       no engine preflight (TensorRT-LLM images: the backend checks its engine)
# Extra arguments are passed on to tritonserver.
set -euo pipefail

repository="${MODEL_REPOSITORY:-/models}"
control_mode="${MODEL_CONTROL_MODE:-none}"
admin_header="triton-admin-key"  # HTTP header; gRPC metadata key: triton-grpc-protocol-triton-admin-key
admin_apis="model-repository,shared-memory,statistics,trace,logging"

case "${control_mode}" in
  none | explicit) ;;
  *)
    echo "error: MODEL_CONTROL_MODE=${control_mode}; expected 'none' or 'explicit' (poll reloads whatever lands in the repository)" >&2
    exit 2
    ;;
esac

if [[ "${SKIP_PREFLIGHT:-0}" == "1" ]]; then
  # TensorRT-LLM repositories: the tensorrtllm backend checks its own engine against the GPU.
  echo "preflight: skipped (SKIP_PREFLIGHT=1)" >&2
elif [[ "${repository}" == *"://"* ]]; then
  # Object storage is read by Triton itself; the engines can only be checked where they are files.
  echo "preflight: skipped for ${repository} (not a local path); run 'triton-bundle preflight' on a synced copy" >&2
else
  "${PYTHON:-python3}" -m triton_bundle.serving.preflight_cli --repository "${repository}"
fi

for arg in "$@"; do
  case "${arg}" in
    --log-verbose | --log-verbose=0) ;;
    --log-verbose=*)
      echo "error: ${arg}: verbose logging writes request contents to the log; it stays off here" >&2
      exit 2
      ;;
  esac
done

key_file="${TRITON_ADMIN_KEY_FILE:-/run/secrets/triton_admin_key}"
admin_key="${TRITON_ADMIN_KEY:-}"
if [[ -z "${admin_key}" && -r "${key_file}" ]]; then
  admin_key="$(tr -d '[:space:]' < "${key_file}")"
fi
if [[ -z "${admin_key}" ]]; then
  # Fail closed: with no key given, the admin APIs get a random one nobody knows.
  admin_key="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
  echo "entrypoint: no admin key given (${key_file} or TRITON_ADMIN_KEY): admin APIs are locked" >&2
fi
if [[ ! "${admin_key}" =~ ^[A-Za-z0-9._~+/-]+$ ]]; then
  echo "error: the admin key may only contain letters, digits and . _ ~ + / - (it is passed as a header value)" >&2
  exit 2
fi

args=(
  "--model-repository=${repository}"
  "--model-control-mode=${control_mode}"
  "--strict-readiness=true"
  "--exit-on-error=true"
  "--http-restricted-api=${admin_apis}:${admin_header}=${admin_key}"
  "--grpc-restricted-protocol=${admin_apis}:${admin_header}=${admin_key}"
  # p50 / p95 / p99 request and queue summaries: the alerting rules and the dashboard read them.
  "--metrics-config=summary_latencies=true"
  "--metrics-config=summary_quantiles=0.5:0.05,0.95:0.005,0.99:0.001"
  # Request contents never reach the log: verbose logging stays off (the admin key guards the logging API).
  "--log-verbose=0"
  "--log-info=true"
  "$@"
)

if [[ "${ENTRYPOINT_DRY_RUN:-0}" == "1" ]]; then
  printf '%s\n' "${args[@]}"
  exit 0
fi
exec "${TRITONSERVER:-tritonserver}" "${args[@]}"
