#!/bin/sh
# The proxy's entrypoint: render nginx.conf from the template and the token file, then run nginx in the
# foreground. POSIX sh: it runs in the alpine nginx image and, in the tests, with Debian's nginx.
#
#   TRITON_BEARER_TOKEN_FILE  accepted tokens, one per line, '#' comments (default /run/secrets/triton_bearer_token)
#   TRITON_HTTP_UPSTREAM      Triton's HTTP address (default triton:8000)
#   TRITON_GRPC_UPSTREAM      Triton's gRPC address (default triton:8001)
#   PROXY_LISTEN              listen address (default 0.0.0.0); PROXY_HTTP_PORT (8080), PROXY_GRPC_PORT (8081)
#   PROXY_RUN_DIR             writable directory for the rendered config, pid and temp files (default /tmp/triton-proxy)
#   PROXY_TEMPLATE            the template (default: nginx.conf.template beside this script)
#   NGINX                     the nginx binary (default: nginx on PATH)
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
template="${PROXY_TEMPLATE:-${here}/nginx.conf.template}"
run_dir="${PROXY_RUN_DIR:-/tmp/triton-proxy}"
token_file="${TRITON_BEARER_TOKEN_FILE:-/run/secrets/triton_bearer_token}"

umask 077
mkdir -p "${run_dir}"
if [ ! -r "${token_file}" ]; then
  echo "error: no token file at ${token_file} (set TRITON_BEARER_TOKEN_FILE); refusing to start an open proxy" >&2
  exit 2
fi

map="${run_dir}/tokens.map"
: > "${map}"
count=0
while IFS= read -r line || [ -n "${line}" ]; do
  token="$(printf '%s' "${line}" | tr -d '[:space:]')"
  case "${token}" in
    '' | '#'*) continue ;;
    *[!A-Za-z0-9._~+/=-]*)
      echo "error: ${token_file}: a token may only contain letters, digits and . _ ~ + / = -" >&2
      exit 2
      ;;
  esac
  if [ "${#token}" -lt 16 ]; then
    echo "error: ${token_file}: a token shorter than 16 characters is too easy to guess" >&2
    exit 2
  fi
  printf '"Bearer %s" 1;\n' "${token}" >> "${map}"
  count=$((count + 1))
done < "${token_file}"
if [ "${count}" -eq 0 ]; then
  echo "error: ${token_file} holds no token; refusing to start an open proxy" >&2
  exit 2
fi

sed -e "s#@RUN_DIR@#${run_dir}#g" \
    -e "s#@LISTEN@#${PROXY_LISTEN:-0.0.0.0}#g" \
    -e "s#@HTTP_PORT@#${PROXY_HTTP_PORT:-8080}#g" \
    -e "s#@GRPC_PORT@#${PROXY_GRPC_PORT:-8081}#g" \
    -e "s#@HTTP_UPSTREAM@#${TRITON_HTTP_UPSTREAM:-triton:8000}#g" \
    -e "s#@GRPC_UPSTREAM@#${TRITON_GRPC_UPSTREAM:-triton:8001}#g" \
    "${template}" > "${run_dir}/nginx.conf"
echo "proxy: ${count} token(s); HTTP :${PROXY_HTTP_PORT:-8080} -> ${TRITON_HTTP_UPSTREAM:-triton:8000}, gRPC :${PROXY_GRPC_PORT:-8081} -> ${TRITON_GRPC_UPSTREAM:-triton:8001}" >&2
exec "${NGINX:-nginx}" -e stderr -c "${run_dir}/nginx.conf" -g 'daemon off;'
