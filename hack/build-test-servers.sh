#!/usr/bin/env bash
# Build the servers the tests download models and data from, pinned by the go.mod/go.sum files
# under hack/test-tools/, into a cache outside git:
#
#   ${FINETUNE_CACHE_DIR:-$HOME/.cache/finetune-operator}/test-servers/bin/versitygw
#
# versitygw is the Versity S3 Gateway (Apache-2.0): an S3-compatible server (SigV4 auth, buckets,
# ETags and the x-amz-checksum-* headers) over a POSIX directory. The dev-cluster harness starts
# it (finetune_devcluster.dataservers). The HTTPS file server and the Hugging Face Hub stand-in
# are Python, in the same module.
#
# A warm cache (binary present and the stamp matching the pin) returns in well under a second. A
# cold build needs only the Go module proxy; parallelism is GO_BUILD_P (2), the compiler runs
# under `nice`.
#
# Usage: hack/build-test-servers.sh [--print-dir]
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${HACK_DIR}/test-tools"
CACHE_DIR="${FINETUNE_CACHE_DIR:-${HOME}/.cache/finetune-operator}"
OUT_DIR="${CACHE_DIR}/test-servers"
BINARIES=(bin/versitygw)

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "${OUT_DIR}"
  exit 0
fi

stamp="$(cat "${BASH_SOURCE[0]}" "${TOOLS_DIR}"/*/go.mod "${TOOLS_DIR}"/*/go.sum | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
up_to_date=true
for b in "${BINARIES[@]}"; do [[ -x "${OUT_DIR}/${b}" ]] || up_to_date=false; done
if ${up_to_date} && [[ "$(cat "${OUT_DIR}/.stamp" 2>/dev/null)" == "${stamp}" ]]; then
  echo "test servers up to date in ${OUT_DIR}"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
P="${GO_BUILD_P:-2}"
mkdir -p "${OUT_DIR}/bin"
STAGE="$(mktemp -d "${OUT_DIR}/.build.XXXXXX")"
trap 'rm -rf "${STAGE}"' EXIT

start=${SECONDS}
echo ">> building github.com/versity/versitygw/cmd/versitygw ${VERSITYGW_VERSION} (module hack/test-tools/versitygw)"
(cd "${TOOLS_DIR}/versitygw" && nice -n 10 go build -p "${P}" -trimpath \
  -ldflags "-s -w -X main.Version=${VERSITYGW_VERSION}" -o "${STAGE}/versitygw" github.com/versity/versitygw/cmd/versitygw)

for b in "${BINARIES[@]}"; do
  mv -f "${STAGE}/$(basename "${b}")" "${OUT_DIR}/${b}"
done
echo "${stamp}" > "${OUT_DIR}/.stamp"
echo "built ${BINARIES[*]} into ${OUT_DIR} in $((SECONDS - start))s"
