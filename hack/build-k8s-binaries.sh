#!/usr/bin/env bash
# Build the local test cluster's binaries from source, pinned by the go.mod/go.sum files under
# hack/k8s-tools/, into a cache outside git:
#
#   ${FINETUNE_CACHE_DIR:-$HOME/.cache/finetune-operator}/k8s/v1.35.4/bin/
#     etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm kubelet kube-proxy
#
# kubelet and kube-proxy run the dev cluster's real node (its container runtime comes from
# hack/build-node-binaries.sh).
#
# A warm cache (every binary present and the stamp matching the pinned versions) returns in
# well under a second. A cold build needs only the Go module proxy; parallelism is GO_BUILD_P (2).
#
# Usage: hack/build-k8s-binaries.sh [--print-bin-dir]
set -euo pipefail

K8S_VERSION=v1.35.4
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${HACK_DIR}/k8s-tools"
CACHE_DIR="${FINETUNE_CACHE_DIR:-${HOME}/.cache/finetune-operator}"
BIN_DIR="${CACHE_DIR}/k8s/${K8S_VERSION}/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm kubelet kube-proxy)

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

# The stamp covers the pins, this script (flags, version strings) and the Go toolchain.
stamp="$(cat "${BASH_SOURCE[0]}" "${TOOLS_DIR}"/*/go.mod "${TOOLS_DIR}"/*/go.sum | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
up_to_date=true
for b in "${BINARIES[@]}"; do [[ -x "${BIN_DIR}/${b}" ]] || up_to_date=false; done
if ${up_to_date} && [[ "$(cat "${BIN_DIR}/.stamp" 2>/dev/null)" == "${stamp}" ]]; then
  echo "k8s binaries up to date in ${BIN_DIR}"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
P="${GO_BUILD_P:-2}"
STAGE="$(mktemp -d "${CACHE_DIR}/k8s/.build.XXXXXX" 2>/dev/null || { mkdir -p "${CACHE_DIR}/k8s"; mktemp -d "${CACHE_DIR}/k8s/.build.XXXXXX"; })"
trap 'rm -rf "${STAGE}"' EXIT

# build DIR OUT LDFLAGS PKG... : go build the packages of the module in hack/k8s-tools/DIR to OUT.
build() {
  local dir="$1" out="$2" ldflags="$3"; shift 3
  local start=${SECONDS}
  echo ">> building $* (module hack/k8s-tools/${dir})"
  (cd "${TOOLS_DIR}/${dir}" && go build -p "${P}" -trimpath -ldflags "-s -w ${ldflags}" -o "${out}" "$@")
  echo "   done in $((SECONDS - start))s"
}

kv=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kv+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=35 -X ${pkg}.gitTreeState=clean"
done

total_start=${SECONDS}
build etcd "${STAGE}/etcd" "" go.etcd.io/etcd/server/v3
build kubernetes "${STAGE}/" "${kv}" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy
build kwok "${STAGE}/" "-X sigs.k8s.io/kwok/pkg/consts.Version=0.7.0" sigs.k8s.io/kwok/cmd/kwok
build helm "${STAGE}/" "-X helm.sh/helm/v3/internal/version.version=v3.22.0" helm.sh/helm/v3/cmd/helm

mkdir -p "${BIN_DIR}"
for b in "${BINARIES[@]}"; do mv -f "${STAGE}/${b}" "${BIN_DIR}/${b}"; done
echo "${stamp}" > "${BIN_DIR}/.stamp"
echo "built ${BINARIES[*]} into ${BIN_DIR} in $((SECONDS - total_start))s"
