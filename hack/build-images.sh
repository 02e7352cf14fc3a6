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
#
# Pushing instead (what `make release` uses, finetune_devcluster.release): with PUSH_TO set, each
# image is built the same way and pushed by BuildKit straight to the registry as
# PUSH_TO/NAME:PUSH_TAG (no archive, never skipped: BuildKit's cache makes an unchanged build an
# export and a push, and the push skips the blobs the registry has). Its manifest digest is written
# to PUSH_DIGEST_DIR/NAME.digest. Further settings of a push:
#   SOURCE_DIR        the checkout to build (default: this one), e.g. a worktree of an older release
#   PUSH_COMPRESSION  layer compression: gzip (default), zstd or uncompressed
#   REGISTRY_CA       a CA file buildkitd trusts for the registry's TLS
#   BASE_IMAGES       local (default: the Debian stand-ins above) or upstream (the Dockerfiles'
#                     own bases, python:3.11-slim-bookworm and nvidia/cuda, pulled by BuildKit)
#   PLATFORMS         BuildKit platforms (default: this machine's; others need binfmt/QEMU)
set -euo pipefail

trap 'echo "${BASH_SOURCE[0]}: line ${LINENO}: \`${BASH_COMMAND}\` failed" >&2' ERR
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The checkout whose Dockerfiles and sources are built (a push may build another one).
SRC="$(cd "${SOURCE_DIR:-${ROOT}}" && pwd)"
PUSH_TO="${PUSH_TO:-}"
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
  local -a config=()
  if [[ -n "${PUSH_TO}" && -n "${REGISTRY_CA:-}" ]]; then  # the push registry's CA, for its TLS
    printf '[registry."%s"]\n  ca = ["%s"]\n' "${PUSH_TO%%/*}" "$(realpath "${REGISTRY_CA}")" >"${IMAGES_DIR}/buildkitd-push.toml"
    config=(--config "${IMAGES_DIR}/buildkitd-push.toml")
  fi
  PATH="${BIN_DIR}:${PATH}" nice -n 10 "${BIN_DIR}/buildkitd" --root "${STATE_DIR}" --addr "unix://${SOCKET}" \
    --containerd-worker=false --oci-worker=true --oci-worker-binary="${BIN_DIR}/runc" \
    --oci-worker-net=host "${config[@]}" \
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
  mapfile -t allowed < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' "${SRC}/.dockerignore")
  (
    cd "${SRC}"
    local files
    files="$(comm -23 <(git ls-files --cached --others --exclude-standard -- "${allowed[@]}" | sort -u) \
                      <(git ls-files --deleted -- "${allowed[@]}" | sort -u))"
    paste -d' ' <(printf '%s\n' "${files}") <(git hash-object --stdin-paths <<<"${files}") | sha
  )
}

# buildctl_build NAME LOG OUTPUT ARGS...: build Dockerfile.NAME of SRC with BuildKit into OUTPUT (an
# --output value): the full plain progress to LOG, the steps as they start and end to the
# terminal; on failure the end of LOG, and exit.
buildctl_build() {
  local name="$1" log="$2" output="$3"; shift 3
  local rc
  set +e
  buildctl build --progress=plain --frontend dockerfile.v0 \
    --local context="${SRC}" --local dockerfile="${SRC}" --opt filename="Dockerfile.${name}" "$@" \
    --output "${output}" 2>&1 | tee "${log}" |
    { grep --line-buffered -E '^#[0-9]+ (\[|DONE|CACHED|ERROR)' | sed -u 's/^/   /'; true; }
  rc=${PIPESTATUS[0]}
  set -e
  if [[ ${rc} != 0 ]]; then
    echo "building ${name} failed; ${log} ends with:" >&2
    tail -n 30 "${log}" >&2
    return 1
  fi
}

# push_image NAME ARGS...: build Dockerfile.NAME and push it as PUSH_TO/NAME:PUSH_TAG; its manifest
# digest goes to PUSH_DIGEST_DIR/NAME.digest.
push_image() {
  local name="$1"; shift
  local ref="${PUSH_TO}/${name}:${PUSH_TAG:?PUSH_TAG: the version to tag with}"
  local out="${PUSH_DIGEST_DIR:?PUSH_DIGEST_DIR: where the digests go}" start=${SECONDS}
  local log="${IMAGES_DIR}/${name}.push.log" metadata="${IMAGES_DIR}/${name}.push.json"
  mkdir -p "${out}"
  start_buildkitd
  prune_cache
  echo ">> ${name}: building ${SRC}/Dockerfile.${name} and pushing ${ref}, log in ${log}"
  buildctl_build "${name}" "${log}" \
    "type=image,name=${ref},push=true,compression=${PUSH_COMPRESSION:-gzip},oci-mediatypes=true" \
    --metadata-file "${metadata}" "$@"
  grep -o '"containerimage.digest": *"sha256:[0-9a-f]*"' "${metadata}" | grep -o 'sha256:[0-9a-f]*' >"${out}/${name}.digest"
  prune_cache
  echo "   ${name} pushed in $((SECONDS - start))s: ${ref}@$(cat "${out}/${name}.digest")"
}

# dependency_inputs NAME BASE_DIGEST: the hash of what the image's big dependency layer is built
# from (its lock, the Dockerfile, the base, BuildKit's version). Unchanged since the last build
# (NAME.deps-inputs), that layer is still in the layer cache (kept by prune_cache, most recently
# used) and a rebuild only adds small layers.
dependency_inputs() {
  { cat "${SRC}/Dockerfile.$1" "${SRC}/requirements/$1.txt"; echo "$2 ${BUILDKIT_VERSION}"; } | sha
}

# room_needed NAME DEPS: the MB a build of NAME needs free, said before it starts rather than
# found out by a full disk. The new archive is written beside the old one (as large as the old, or
# 7 GB for a first trainer build), and a changed lock or base adds the dependency layer as a
# snapshot and a blob (about 13 GB for the trainer's virtualenv) plus pip's downloads.
room_needed() {
  local name="$1" deps="$2" archive="${IMAGES_DIR}/$1.tar" archive_mb=500 layers_mb=1000
  if [[ "${name}" == trainer ]]; then archive_mb=7000 layers_mb=16000; fi
  if [[ -f "${archive}" ]]; then archive_mb=$(($(stat -c %s "${archive}") / 1048576 + 200)); fi
  [[ "$(cat "${IMAGES_DIR}/${name}.deps-inputs" 2>/dev/null)" != "${deps}" ]] || layers_mb=500
  echo $((archive_mb + layers_mb))
}

# build_image NAME: Dockerfile.NAME -> IMAGES_DIR/NAME.tar, unless its inputs are unchanged
# (with PUSH_TO: pushed to the registry instead, push_image).
build_image() {
  local name="$1" base base_arg
  local -a args=() base_args=()
  case "${name}" in
    operator) base=python base_arg=PYTHON_IMAGE ;;
    trainer) base=cuda base_arg=CUDA_IMAGE args=(--opt build-arg:WITH_DEMO_MODELS=true) ;;
  esac
  local ref="${REF_PREFIX}/${name}:dev" archive="${IMAGES_DIR}/${name}.tar"
  local base_ref="${REF_PREFIX}/base-${base}:bookworm"
  local digest="" inputs export_opts
  if [[ "${BASE_IMAGES:-local}" == local ]]; then
    build_base "${base}" "${base_ref}"
    digest="${BASE_DIGEST}"
    args+=(--opt "build-arg:${base_arg}=${base_ref}")
    base_args=(--oci-layout "base=${IMAGES_DIR}/base/${base}" --opt "context:${base_ref}=oci-layout://base@${digest}")
  fi
  [[ -z "${PLATFORMS:-}" ]] || args+=(--opt "platform=${PLATFORMS}")
  if [[ -n "${PUSH_TO}" ]]; then
    push_image "${name}" "${args[@]}" "${base_args[@]}"
    return
  fi
  export_opts="type=oci,name=${ref},compression=uncompressed,oci-mediatypes=true"
  inputs="$({
    cat "${SRC}/Dockerfile.${name}" "${SRC}/.dockerignore"
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
  local deps need_mb free_mb
  deps="$(dependency_inputs "${name}" "${digest}")"
  if [[ "${name}" == trainer && "$(cat "${IMAGES_DIR}/trainer.deps-inputs" 2>/dev/null)" != "${deps}" ]]; then
    # A new lock or base: the cached virtualenv layer is stale. Clearing the cache makes room for
    # the new one (the old trainer cache plus a new layer did not fit a CI machine's disk).
    buildctl prune --all >/dev/null
    rm -f "${IMAGES_DIR}/${name}.deps-inputs"
  fi
  need_mb="$(room_needed "${name}" "${deps}")"
  free_mb="$(df --output=avail -m "${IMAGES_DIR}" | tail -n 1 | tr -d ' ')"
  if ((free_mb < need_mb)); then
    echo "building ${name} needs at least ${need_mb} MB free under ${IMAGES_DIR}; ${free_mb} MB are" >&2
    exit 1
  fi
  local start=${SECONDS} log="${IMAGES_DIR}/${name}.build.log"
  echo ">> ${name}: building Dockerfile.${name} (${args[*]}), log in ${log}"
  if ! buildctl_build "${name}" "${log}" "${export_opts},dest=${archive}.partial" "${args[@]}" "${base_args[@]}"; then
    rm -f "${archive}.partial"
    exit 1
  fi
  chmod 0644 "${archive}.partial"
  mv -f "${archive}.partial" "${archive}"
  echo "${inputs}" >"${archive}.inputs"
  echo "${deps}" >"${IMAGES_DIR}/${name}.deps-inputs"
  prune_cache
  echo "   ${name} built in $((SECONDS - start))s: ${archive} (${ref}, $(human_size "${archive}"))"
}

for name in "${images[@]}"; do
  build_image "${name}"
done
