#!/usr/bin/env bash
# Move every image to another NVIDIA release in one command: docker/set-release.sh 25.11
# Rewrites TRITON_RELEASE in docker/.env, the triton-bundle image tags in deploy/ and the spec default
# (EngineSpec.triton_image_tag). The facts line in docker/.env (TensorRT version, minimum driver) and the
# release's row in triton_bundle/repository/triton_images.py must then be updated by hand from NVIDIA's
# sources (docs/ops-release.md says where): the test suite fails until both name the release.
set -euo pipefail

release="${1:?usage: docker/set-release.sh YY.MM}"
if [[ ! "${release}" =~ ^[0-9]{2}\.[0-9]{2}$ ]]; then
  echo "error: expected a release as YY.MM (e.g. 25.11), got '${release}'" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

sed -i -E "s/^TRITON_RELEASE=.*/TRITON_RELEASE=${release}/" "${root}/docker/.env"
find "${root}/deploy" -name '*.yaml' -exec \
  sed -i -E "s#(image: triton-bundle/[a-z0-9-]+):[0-9]{2}\.[0-9]{2}#\1:${release}#" {} +
sed -i -E "s/(triton_image_tag: str = Field\(\s*\")[0-9]{2}\.[0-9]{2}\"/\1${release}\"/" \
  "${root}/triton_bundle/spec.py"
echo "pinned to ${release}; now update the 'Release ...' facts line in docker/.env, its row in" \
  "triton_bundle/repository/triton_images.py, docs/ops-release.md and the README" >&2
