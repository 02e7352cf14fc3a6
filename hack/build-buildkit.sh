#!/usr/bin/env bash
# Build the image builder from source, pinned by the go.mod/go.sum files under hack/image-tools/,
# into a cache outside git:
#
#   ${FINETUNE_CACHE_DIR:-$HOME/.cache/finetune-operator}/buildkit/v0.34.2/bin/
#     buildkitd buildctl   (BuildKit, static, no cgo)
#     runc                 (the OCI runtime of buildkitd's OCI worker; cgo + libseccomp,
#                           Debian's libseccomp-dev: `make image-deps` installs it)
#
# A warm cache (every binary present and the stamp matching the pins) returns in well under a
# second. A cold build needs only the Go module proxy; parallelism is GO_BUILD_P (2), and the
# compiler runs under `nice`.
#
# Usage: hack/build-buildkit.sh [--print-bin-dir]
set -euo pipefail

BUILDKIT_VERSION=v0.34.2
RUNC_VERSION=v1.5.2
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${HACK_DIR}/image-tools"
CACHE_DIR="${FINETUNE_CACHE_DIR:-${HOME}/.cache/finetune-operator}"
BIN_DIR="${CACHE_DIR}/buildkit/${BUILDKIT_VERSION}/bin"
BINARIES=(buildkitd buildctl runc)

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

# The stamp covers the pins, this script (flags, version strings) and the Go toolchain.
stamp="$(cat "${BASH_SOURCE[0]}" "${TOOLS_DIR}"/*/go.mod "${TOOLS_DIR}"/*/go.sum | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
up_to_date=true
for b in "${BINARIES[@]}"; do [[ -x "${BIN_DIR}/${b}" ]] || up_to_date=false; done
if ${up_to_date} && [[ "$(cat "${BIN_DIR}/.stamp" 2>/dev/null)" == "${stamp}" ]]; then
  echo "buildkit binaries up to date in ${BIN_DIR}"
  exit 0
fi

if ! pkg-config --exists libseccomp 2>/dev/null; then
  echo "runc needs libseccomp's headers: run \`make image-deps\` (apt-get install libseccomp-dev)" >&2
  exit 1
fi

export GOFLAGS="-mod=readonly -buildvcs=false"
P="${GO_BUILD_P:-2}"
mkdir -p "${CACHE_DIR}/buildkit"
STAGE="$(mktemp -d "${CACHE_DIR}/buildkit/.build.XXXXXX")"
trap 'rm -rf "${STAGE}"' EXIT

# build DIR CGO TAGS LDFLAGS PKG... : go build the packages of the module in hack/image-tools/DIR into the stage.
build() {
  local dir="$1" cgo="$2" tags="$3" ldflags="$4"; shift 4
  local start=${SECONDS}
  echo ">> building $* (module hack/image-tools/${dir})"
  (cd "${TOOLS_DIR}/${dir}" && CGO_ENABLED="${cgo}" nice -n 10 go build -p "${P}" -trimpath -tags "${tags}" \
    -ldflags "-s -w ${ldflags}" -o "${STAGE}/" "$@")
  echo "   done in $((SECONDS - start))s"
}

bk="-X github.com/moby/buildkit/version.Version=${BUILDKIT_VERSION} -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit"
total_start=${SECONDS}
build buildkit 0 "osusergo netgo static_build seccomp" "${bk}" \
  github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
# runc's own Makefile tags, less libpathrs (a Rust library Debian 12 does not package).
build runc 1 "seccomp urfave_cli_no_docs" "-X main.gitCommit=${RUNC_VERSION}" github.com/opencontainers/runc

mkdir -p "${BIN_DIR}"
for b in "${BINARIES[@]}"; do mv -f "${STAGE}/${b}" "${BIN_DIR}/${b}"; done
echo "${stamp}" > "${BIN_DIR}/.stamp"
echo "built ${BINARIES[*]} into ${BIN_DIR} in $((SECONDS - total_start))s"
