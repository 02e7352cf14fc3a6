#!/usr/bin/env bash
# Build the operator and trainer images from Dockerfile.operator and Dockerfile.trainer with
# BuildKit, without a container registry, into OCI image archives under the cache:
#
#   ${FINETUNE_CACHE_DIR:-$HOME/.cache/finetune-operator}/images/
#     operator.tar   ref localhost/finetune-operator/operator:dev
#     trainer.tar    ref localhost/finetune-operator/trainer:dev   (WITH_DEMO_MODELS=true)
#
# Archive format (what the dev node imports): an OCI image layout in a tar file (BuildKit's
# `oci` exporter), one linux/amd64 image per archive, layers UNCOMPRESSED
# (application/vnd.oci.image.layer.v1.tar: gzip -6 of the trainer's 6.1 GB virtualenv layer took
# 6 min here for a 46% saving, against 80 s for the whole uncompressed export), the ref in
# index.json as `io.containerd.image.name` (full ref) and `org.opencontainers.image.ref.name`
# (tag). A rebuild writes NAME.tar.partial and renames it over NAME.tar. Import with
#   ctr -n k8s.io images import "$(hack/build-images.sh --print-dir)/trainer.tar"
# Next to each archive, NAME.tar.inputs holds the hash of the inputs it was built from.
#
# The Dockerfiles keep their real base images as defaults; only their base-image ARGs are
# overridden here (plus WITH_DEMO_MODELS=true for the trainer, so `builtin:minilm-l6` works):
#   PYTHON_IMAGE  <- a Debian bookworm python3.11 + venv image    (stands in for python:3.11-slim-bookworm)
#   CUDA_IMAGE    <- a Debian bookworm image with apt and passwd  (stands in for nvidia/cuda:*-runtime-ubuntu22.04;
#                    no CUDA libraries: torch's nvidia-* wheels bring the CUDA runtime)
# Both are built with mmdebstrap from the Debian packages of this machine's apt sources, and
# reach BuildKit as named contexts from local OCI layouts (--oci-layout), so nothing is pulled.
#
# Skipping: an image is rebuilt only when the hash of its inputs changes (the Dockerfile,
# .dockerignore, the files of the build context, the base image's digest, the build args, the
# BuildKit version). Rebuilds are cheap: a persistent BuildKit state dir (layer cache) and a pip
# cache mount live under images/buildkit/. Steps that need PyPI or Debian use the host's
# network (buildkitd --oci-worker-net=host) during the build only.
#
# Needs root (buildkitd, mmdebstrap), `make image-deps` and hack/build-buildkit.sh (run here).
# Usage: hack/build-images.sh [operator|trainer]...   (default: both)
#        hack/build-images.sh --print-dir
set -euo pipefail

trap 'echo "${BASH_SOURCE[0]}: line ${LINENO}: \`${BASH_COMMAND}\` failed" >&2' ERR
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${FINETUNE_CACHE_DIR:-${HOME}/.cache/finetune-operator}"
IMAGES_DIR="${CACHE_DIR}/images"
STATE_DIR="${IMAGES_DIR}/buildkit"
SOCKET="${IMAGES_DIR}/buildkitd.sock"
REF_PREFIX=localhost/finetune-operator
# The layer cache kept between builds, in MB, least recently used first out. One trainer build's
# cache is about 13 GB (its virtualenv layer); BuildKit's own GC only runs between builds, so a
# rebuild would hold the superseded layers too (26+ GB, a full disk on a CI machine): the cache
# is pruned to this size before and after every build, keeping the newest build's layers.
KEEP_STORAGE_MB="${BUILDKIT_KEEP_STORAGE_MB:-16000}"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "${IMAGES_DIR}"
  exit 0
fi
images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=(operator trainer)
for name in "${images[@]}"; do
  [[ "${name}" == operator || "${name}" == trainer ]] || { echo "unknown image: ${name} (operator|trainer)" >&2; exit 2; }
done
[[ "$(id -u)" == 0 ]] || { echo "building images needs root (buildkitd, mmdebstrap)" >&2; exit 1; }

mkdir -p "${IMAGES_DIR}/base"
# One build at a time per cache (the tests and `make images` may overlap).
exec 9>"${IMAGES_DIR}/.lock"
flock 9

bash "${ROOT}/hack/build-buildkit.sh"
BIN_DIR="$(bash "${ROOT}/hack/build-buildkit.sh" --print-bin-dir)"
BUILDKIT_VERSION="$(basename "$(dirname "${BIN_DIR}")")"
buildctl() { "${BIN_DIR}/buildctl" --addr "unix://${SOCKET}" "$@"; }

sha() { sha256sum | cut -d' ' -f1; }
human_size() { du -sh --apparent-size "$1" | cut -f1; }

# --- buildkitd: started on first use, stopped on exit -------------------------------------------

BUILDKITD_PID=""
stop_buildkitd() {
  if [[ -n "${BUILDKITD_PID}" ]]; then
    kill "${BUILDKITD_PID}" 2>/dev/null || true
    wait "${BUILDKITD_PID}" 2>/dev/null || true
    BUILDKITD_PID=""
  fi
}
trap stop_buildkitd EXIT

start_buildkitd() {
  [[ -z "${BUILDKITD_PID}" ]] || return 0
  rm -f "${SOCKET}"
  PATH="${BIN_DIR}:${PATH}" nice -n 10 "${BIN_DIR}/buildkitd" --root "${STATE_DIR}" --addr "unix://${SOCKET}" \
    --containerd-worker=false --oci-worker=true --oci-worker-binary="${BIN_DIR}/runc" \
    --oci-worker-net=host \
    >>"${IMAGES_DIR}/buildkitd.log" 2>&1 9>&- &
  BUILDKITD_PID=$!
  local deadline=$((SECONDS + 60))
  until buildctl debug workers >/dev/null 2>&1; do
    if ! kill -0 "${BUILDKITD_PID}" 2>/dev/null || ((SECONDS > deadline)); then
      echo "buildkitd did not start; its log (${IMAGES_DIR}/buildkitd.log) ends with:" >&2
      tail -n 20 "${IMAGES_DIR}/buildkitd.log" >&2
      exit 1
    fi
    sleep 0.5
  done
}

# prune_cache: the layer cache down to KEEP_STORAGE_MB (see above).
prune_cache() {
  local freed
  freed="$(buildctl prune --keep-storage "${KEEP_STORAGE_MB}" | awk '$1 == "Total:" {print $2}')"
  [[ -z "${freed}" || "${freed}" == 0B ]] || echo "   layer cache pruned to ${KEEP_STORAGE_MB} MB: ${freed} freed"
}

# --- base images from Debian packages ------------------------------------------------------------

# The host's Debian bookworm apt sources (main, updates, security) as one-line entries; they
# also become the images' /etc/apt/sources.list, for the trainer's apt-get install.
apt_sources() {
  if [[ -n "${BASE_APT_SOURCES:-}" ]]; then
    printf '%s\n' "${BASE_APT_SOURCES}"
    return
  fi
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' \
    | awk '$2 ~ /^bookworm(-updates|-security)?$/ && $3 == "main" {print "deb " $0}' | sort -u
}

DPKG_SLIM=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*')

# The CAs this host trusts go into both bases (/usr/local/share/ca-certificates, merged into
# /etc/ssl/certs/ca-certificates.crt when the ca-certificates package is installed) and pip is
# pointed at the system bundle, so that pip in the build trusts what the host's pip trusts.
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
TRUST_HOOK="mkdir -p \"\$1/usr/local/share/ca-certificates\" \
  && cp ${HOST_CA_BUNDLE} \"\$1/usr/local/share/ca-certificates/host-trust.crt\""
# The host's resolv.conf and hostname, copied in for apt, stay out of the image (the runtime provides them).
HOST_FILES_HOOK='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'

# Fixed file and image timestamps make a base reproducible: rebuilt from the same packages, it has
# the same digest, and the images' layer cache stays valid.
BASE_EPOCH=1704067200

# base_recipe NAME: the packages and image config of each local base image.
base_recipe() {
  case "$1" in
    python) echo "packages=python3,python3-venv,python-is-python3,ca-certificates,passwd"
            echo "ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
            echo 'CMD ["python3"]' ;;
    cuda)   echo "packages=passwd"
            echo "ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
            # As in nvidia/cuda, so that the NVIDIA container runtime injects the driver here too.
            echo "ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility"
            echo 'CMD ["bash"]' ;;
  esac
}

# build_base NAME REF: mmdebstrap a bookworm rootfs and make it an OCI layout (REF) with BuildKit,
# unless its recipe is unchanged; sets BASE_DIGEST to the layout's manifest digest.
build_base() {
  local name="$1" ref="$2" dir="${IMAGES_DIR}/base/$1"
  local recipe sources stamp
  recipe="$(base_recipe "${name}")"
  # The host's apt configuration stands for the sources here (reading them through apt takes seconds).
  stamp="$({
    printf '%s\n' "${recipe}" "${BASE_APT_SOURCES:-}" "${DPKG_SLIM[*]}" "${TRUST_HOOK}" "${HOST_FILES_HOOK}" \
      "${ref}" "${BUILDKIT_VERSION}" "${BASE_EPOCH}"
    cat "${HOST_CA_BUNDLE}"
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do if [[ -f "${f}" ]]; then cat "${f}"; fi; done
  } | sha)"
  if [[ -f "${dir}/index.json" && "$(cat "${dir}.inputs" 2>/dev/null)" == "${stamp}" ]]; then
    echo "base ${name}: up to date (${ref}, $(human_size "${dir}"))"
  else
    local start=${SECONDS} stage
    stage="$(mktemp -d "${IMAGES_DIR}/base/.build.XXXXXX")"
    echo ">> base ${name}: mmdebstrap bookworm (${recipe%%$'\n'*})"
    sources="$(apt_sources)"
    [[ -n "${sources}" ]] || { echo "no Debian bookworm apt source on this host: set BASE_APT_SOURCES" >&2; exit 1; }
    local -a mirrors=()
    mapfile -t mirrors <<<"${sources}"
    SOURCE_DATE_EPOCH="${BASE_EPOCH}" nice -n 10 mmdebstrap --quiet --variant=minbase --mode=root --format=tar --skip=output/dev \
      --aptopt='APT::Install-Recommends "false"' "${DPKG_SLIM[@]}" --essential-hook="${TRUST_HOOK}" \
      --customize-hook="${HOST_FILES_HOOK}" \
      --include="$(sed -n 's/^packages=//p' <<<"${recipe}")" bookworm "${stage}/rootfs.tar" "${mirrors[@]}"
    { echo "FROM scratch"; echo "ADD rootfs.tar /"; grep -v '^packages=' <<<"${recipe}"; } >"${stage}/Dockerfile"
    start_buildkitd
    rm -rf "${dir}"
    buildctl build --progress=quiet --frontend dockerfile.v0 --local context="${stage}" --local dockerfile="${stage}" \
      --opt build-arg:SOURCE_DATE_EPOCH="${BASE_EPOCH}" \
      --output "type=oci,dest=${dir},tar=false,name=${ref},compression=uncompressed,rewrite-timestamp=true"
    rm -rf "${stage}"
    echo "${stamp}" >"${dir}.inputs"
    echo "   base ${name} built in $((SECONDS - start))s ($(human_size "${dir}"))"
  fi
  BASE_DIGEST="$(grep -o '"digest":"sha256:[0-9a-f]*"' "${dir}/index.json" | head -n 1 | cut -d'"' -f4)"
}

# --- the two images ------------------------------------------------------------------------------

# The files BuildKit sends as the build context: the allow-list of .dockerignore (its `!` lines),
# as git sees them (tracked or new, not ignored: .gitignore drops the same caches), with their
# content as it is in the work tree. Hashed with their paths, so a rename or a removal counts too.
context_hash() {
  local -a allowed
  mapfile -t allowed < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' "${ROOT}/.dockerignore")
  (
    cd "${ROOT}"
    local files
    files="$(comm -23 <(git ls-files --cached --others --exclude-standard -- "${allowed[@]}" | sort -u) \
                      <(git ls-files --deleted -- "${allowed[@]}" | sort -u))"
    paste -d' ' <(printf '%s\n' "${files}") <(git hash-object --stdin-paths <<<"${files}") | sha
  )
}

# build_image NAME: Dockerfile.NAME -> IMAGES_DIR/NAME.tar, unless its inputs are unchanged.
build_image() {
  local name="$1" base base_arg
  local -a args=()
  case "${name}" in
    operator) base=python base_arg=PYTHON_IMAGE ;;
    trainer) base=cuda base_arg=CUDA_IMAGE args=(--opt build-arg:WITH_DEMO_MODELS=true) ;;
  esac
  local ref="${REF_PREFIX}/${name}:dev" archive="${IMAGES_DIR}/${name}.tar"
  local base_ref="${REF_PREFIX}/base-${base}:bookworm"
  local digest inputs export_opts
  build_base "${base}" "${base_ref}"
  digest="${BASE_DIGEST}"
  args+=(--opt "build-arg:${base_arg}=${base_ref}")
  export_opts="type=oci,name=${ref},compression=uncompressed,oci-mediatypes=true"
  inputs="$({
    cat "${ROOT}/Dockerfile.${name}" "${ROOT}/.dockerignore"
    echo "$(context_hash) ${digest} ${args[*]} ${export_opts} ${BUILDKIT_VERSION}"
  } | sha)"
  if [[ -f "${archive}" && "$(cat "${archive}.inputs" 2>/dev/null)" == "${inputs}" ]]; then
    echo "${name}: up to date: ${archive} (${ref}, $(human_size "${archive}"))"
    return
  fi
  # The new archive is written beside the old one and renamed over it, so that a reader of the old
  # one (an import into the node) is never cut short: room for a whole archive is the least needed.
  # A trainer build also needs room for its new layers (about 13 GB) beside the cache kept.
  rm -f "${archive}.inputs"
  start_buildkitd
  prune_cache
  local free_mb need_mb=1000
  [[ "${name}" != trainer ]] || need_mb=20000
  free_mb="$(df --output=avail -m "${IMAGES_DIR}" | tail -n 1 | tr -d ' ')"
  if ((free_mb < need_mb)); then
    echo "building ${name} needs at least ${need_mb} MB free under ${IMAGES_DIR}; ${free_mb} MB are" >&2
    exit 1
  fi
  local start=${SECONDS} log="${IMAGES_DIR}/${name}.build.log"
  echo ">> ${name}: building Dockerfile.${name} (${args[*]}), log in ${log}"
  # The full plain progress goes to the log; the steps, as they start and end, to the terminal.
  local rc
  set +e
  buildctl build --progress=plain --frontend dockerfile.v0 \
    --local context="${ROOT}" --local dockerfile="${ROOT}" --opt filename="Dockerfile.${name}" "${args[@]}" \
    --oci-layout "base=${IMAGES_DIR}/base/${base}" --opt "context:${base_ref}=oci-layout://base@${digest}" \
    --output "${export_opts},dest=${archive}.partial" 2>&1 | tee "${log}" |
    { grep --line-buffered -E '^#[0-9]+ (\[|DONE|CACHED|ERROR)' | sed -u 's/^/   /'; true; }
  rc=${PIPESTATUS[0]}
  set -e
  if [[ ${rc} != 0 ]]; then
    echo "building ${name} failed; ${log} ends with:" >&2
    tail -n 30 "${log}" >&2
    rm -f "${archive}.partial"
    exit 1
  fi
  chmod 0644 "${archive}.partial"
  mv -f "${archive}.partial" "${archive}"
  echo "${inputs}" >"${archive}.inputs"
  prune_cache
  echo "   ${name} built in $((SECONDS - start))s: ${archive} (${ref}, $(human_size "${archive}"))"
}

for name in "${images[@]}"; do
  build_image "${name}"
done
