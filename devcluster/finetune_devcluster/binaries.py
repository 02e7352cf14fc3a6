"""Where the cluster binaries live, and building them with the hack/build-*.sh scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

K8S_VERSION = "v1.35.4"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    "kubelet",
    "kube-proxy",
)
NODE_BINARIES = (
    "bin/containerd",
    "bin/containerd-shim-runc-v2",
    "bin/ctr",
    "bin/crictl",
    "bin/coredns",
    "bin/fake-gpu-device-plugin",
    "bin/pause",
    "cni-bin/bridge",
    "cni-bin/host-local",
    "cni-bin/loopback",
    "cni-bin/portmap",
)
HACK = Path(__file__).resolve().parents[2] / "hack"
BUILD_SCRIPT = HACK / "build-k8s-binaries.sh"
NODE_BUILD_SCRIPT = HACK / "build-node-binaries.sh"
RUNC_BUILD_SCRIPT = HACK / "build-buildkit.sh"  # runc: one pin for BuildKit and the node


def cache_dir() -> Path:
    return Path(os.environ.get("FINETUNE_CACHE_DIR") or Path.home() / ".cache" / "finetune-operator")


def bin_dir() -> Path:
    """The cache folder build-k8s-binaries.sh fills (same formula as the script)."""
    return cache_dir() / "k8s" / K8S_VERSION / "bin"


def node_dir() -> Path:
    """The cache folder build-node-binaries.sh fills: bin/, cni-bin/ (same formula as the script)."""
    return cache_dir() / "node"


def runc_path() -> Path:
    """runc as built by build-buildkit.sh (the script prints its bin dir)."""
    out = subprocess.run(
        ["bash", str(RUNC_BUILD_SCRIPT), "--print-bin-dir"], check=True, capture_output=True, text=True
    ).stdout
    return Path(out.strip()) / "runc"


def _run_build(script: Path) -> None:
    if not script.exists():
        raise RuntimeError(f"{script} not found: finetune_devcluster must run from a source checkout")
    try:
        subprocess.run(["bash", str(script)], check=True)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"`bash {script}` failed ({exc}); run it and read its output") from exc


def build() -> None:
    """Run the control-plane build script (seconds when the cache is warm, ~20 min cold on 2 cores)."""
    _run_build(BUILD_SCRIPT)


def ensure_binaries() -> Path:
    """Return the bin dir, building the binaries first when any is missing or stale."""
    if shutil.which("go") is None and all((bin_dir() / b).exists() for b in BINARIES):
        return bin_dir()  # no Go toolchain to check the stamp with: trust the cache
    build()
    return bin_dir()


def ensure_node_binaries() -> Path:
    """Return the node dir (and make sure runc exists), building what is missing or stale."""
    have_all = all((node_dir() / b).exists() for b in NODE_BINARIES)
    if shutil.which("go") is None and have_all and runc_path().exists():
        return node_dir()
    _run_build(NODE_BUILD_SCRIPT)
    _run_build(RUNC_BUILD_SCRIPT)
    return node_dir()
