#!/usr/bin/env bash
# Build the CNCF distribution registry from source, pinned by hack/release-tools/registry/go.mod
# and go.sum (main.go there: upstream's cmd/registry with the filesystem storage driver only), into
# a cache outside git:
#
#   ${FINETUNE_CACHE_DIR:-$HOME/.cache/finetune-operator}/registry/v3.1.2/bin/registry
#
# It is the OCI registry that `make release` is tested against: the dev cluster harness serves it
# with TLS on the node's link (finetune_devcluster.registry), BuildKit pushes the images to it,
# `helm push` the chart, and the dev node pulls from it.
#
# A warm cache (the binary present and the stamp matching the pins) returns in well under a second.
# A cold build needs only the Go module proxy; parallelism is GO_BUILD_P (2), the compiler runs
# under `nice`.
#
# Usage: hack/build-registry.sh [--print-bin-dir]
set -euo pipefail

REGISTRY_VERSION=v3.1.2
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE_DIR="${HACK_DIR}/release-tools/registry"
CACHE_DIR="${FINETUNE_CACHE_DIR:-${HOME}/.cache/finetune-operator}"
BIN_DIR="${CACHE_DIR}/registry/${REGISTRY_VERSION}/bin"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

# The stamp covers the pins, main.go, this script (flags, version string) and the Go toolchain.
stamp="$(cat "${BASH_SOURCE[0]}" "${MODULE_DIR}"/go.mod "${MODULE_DIR}"/go.sum "${MODULE_DIR}"/main.go \
  | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
if [[ -x "${BIN_DIR}/registry" && "$(cat "${BIN_DIR}/.stamp" 2>/dev/null)" == "${stamp}" ]]; then
  echo "registry up to date in ${BIN_DIR}"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
mkdir -p "${CACHE_DIR}/registry"
STAGE="$(mktemp -d "${CACHE_DIR}/registry/.build.XXXXXX")"
trap 'rm -rf "${STAGE}"' EXIT

start=${SECONDS}
echo ">> building the distribution registry ${REGISTRY_VERSION} (module hack/release-tools/registry)"
(cd "${MODULE_DIR}" && nice -n 10 go build -p "${GO_BUILD_P:-2}" -trimpath \
  -ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=${REGISTRY_VERSION}" \
  -o "${STAGE}/registry" .)
mkdir -p "${BIN_DIR}"
mv -f "${STAGE}/registry" "${BIN_DIR}/registry"
echo "${stamp}" >"${BIN_DIR}/.stamp"
echo "built registry into ${BIN_DIR} in $((SECONDS - start))s"
