#!/usr/bin/env bash
# Build the dev cluster's real node runtime from source, pinned by the go.mod/go.sum files under
# hack/node-tools/, into a cache outside git:
#
#   ${FINETUNE_CACHE_DIR:-$HOME/.cache/finetune-operator}/node/
#     bin/      containerd containerd-shim-runc-v2 ctr crictl coredns fake-gpu-device-plugin pause
#     cni-bin/  bridge host-local loopback portmap   (CNI reference plugins)
#
# kubelet and kube-proxy come from hack/build-k8s-binaries.sh (the same k8s.io/kubernetes pin as
# the control plane), runc from hack/build-buildkit.sh (one runc pin for BuildKit and the node).
# `pause` is Kubernetes' own build/pause/linux/pause.c from the pinned k8s.io/kubernetes module,
# compiled static with gcc: the node wraps it into its sandbox image. `coredns` (the cluster DNS,
# hack/node-tools/coredns/main.go: CoreDNS with the plugins the dev cluster uses) runs as a pod too.
#
# A warm cache (every binary present and the stamp matching the pins) returns in well under a
# second. A cold build needs only the Go module proxy; parallelism is GO_BUILD_P (2), and the
# compiler runs under `nice`.
#
# Usage: hack/build-node-binaries.sh [--print-dir]
set -euo pipefail

CONTAINERD_VERSION=v2.2.9
CNI_PLUGINS_VERSION=v1.9.1
CRI_TOOLS_VERSION=v1.34.0
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${HACK_DIR}/node-tools"
K8S_MODULE_DIR="${HACK_DIR}/k8s-tools/kubernetes"
CACHE_DIR="${FINETUNE_CACHE_DIR:-${HOME}/.cache/finetune-operator}"
NODE_DIR="${CACHE_DIR}/node"
BINARIES=(bin/containerd bin/containerd-shim-runc-v2 bin/ctr bin/crictl bin/coredns bin/fake-gpu-device-plugin bin/pause
  cni-bin/bridge cni-bin/host-local cni-bin/loopback cni-bin/portmap)

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "${NODE_DIR}"
  exit 0
fi

# The stamp covers the pins (the k8s module too: pause.c comes from it), this script and the toolchains.
stamp="$(cat "${BASH_SOURCE[0]}" "${TOOLS_DIR}"/*/go.mod "${TOOLS_DIR}"/*/go.sum "${TOOLS_DIR}"/*/*.go \
  "${K8S_MODULE_DIR}/go.mod" | sha256sum | cut -d' ' -f1) $(go env GOVERSION) $(gcc -dumpfullversion)"
up_to_date=true
for b in "${BINARIES[@]}"; do [[ -x "${NODE_DIR}/${b}" ]] || up_to_date=false; done
if ${up_to_date} && [[ "$(cat "${NODE_DIR}/.stamp" 2>/dev/null)" == "${stamp}" ]]; then
  echo "node binaries up to date in ${NODE_DIR}"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
P="${GO_BUILD_P:-2}"
mkdir -p "${NODE_DIR}"
STAGE="$(mktemp -d "${NODE_DIR}/.build.XXXXXX")"
trap 'rm -rf "${STAGE}"' EXIT
mkdir -p "${STAGE}/bin" "${STAGE}/cni-bin"

# build DIR OUT LDFLAGS PKG... : go build the packages of the module in hack/node-tools/DIR to OUT.
build() {
  local dir="$1" out="$2" ldflags="$3"; shift 3
  local start=${SECONDS}
  echo ">> building $* (module hack/node-tools/${dir})"
  (cd "${TOOLS_DIR}/${dir}" && nice -n 10 go build -p "${P}" -trimpath -ldflags "-s -w ${ldflags}" -o "${out}" "$@")
  echo "   done in $((SECONDS - start))s"
}

total_start=${SECONDS}
build containerd "${STAGE}/bin/" "-X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}" \
  github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  github.com/containerd/containerd/v2/cmd/ctr
build cri-tools "${STAGE}/bin/" "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION}" \
  sigs.k8s.io/cri-tools/cmd/crictl
build cni-plugins "${STAGE}/cni-bin/" \
  "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=${CNI_PLUGINS_VERSION}" \
  github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/ipam/host-local \
  github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/meta/portmap
build gpu-device-plugin "${STAGE}/bin/fake-gpu-device-plugin" "" .
build coredns "${STAGE}/bin/coredns" "" .

echo ">> compiling pause (build/pause/linux/pause.c of the pinned k8s.io/kubernetes)"
k8s_src="$(cd "${K8S_MODULE_DIR}" && go mod download -json k8s.io/kubernetes | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
gcc -Os -Wall -Werror -static -DVERSION="$(cd "${K8S_MODULE_DIR}" && go list -m -f '{{.Version}}' k8s.io/kubernetes)" \
  -o "${STAGE}/bin/pause" "${k8s_src}/build/pause/linux/pause.c"
strip "${STAGE}/bin/pause"

for b in "${BINARIES[@]}"; do
  mkdir -p "$(dirname "${NODE_DIR}/${b}")"
  mv -f "${STAGE}/${b}" "${NODE_DIR}/${b}"
done
echo "${stamp}" > "${NODE_DIR}/.stamp"
echo "built ${BINARIES[*]} into ${NODE_DIR} in $((SECONDS - total_start))s"
