"""Where the cluster binaries live, and building them with hack/build-k8s-binaries.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

K8S_VERSION = "v1.35.4"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm")
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "build-k8s-binaries.sh"


def bin_dir() -> Path:
    """The cache folder the build script fills (same formula as the script)."""
    cache = os.environ.get("FINETUNE_CACHE_DIR") or str(Path.home() / ".cache" / "finetune-operator")
    return Path(cache) / "k8s" / K8S_VERSION / "bin"


def build() -> None:
    """Run the build script (seconds when the cache is warm, ~20 min cold on 2 cores)."""
    if not BUILD_SCRIPT.exists():
        raise RuntimeError(f"{BUILD_SCRIPT} not found: finetune_devcluster must run from a source checkout")
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)


def ensure_binaries() -> Path:
    """Return the bin dir, building the binaries first when any is missing or stale."""
    if shutil.which("go") is None and all((bin_dir() / b).exists() for b in BINARIES):
        return bin_dir()  # no Go toolchain to check the stamp with: trust the cache
    try:
        build()
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        raise RuntimeError(
            f"the cluster binaries are missing from {bin_dir()} and building them failed ({exc}); "
            f"run `bash {BUILD_SCRIPT}` and read its output"
        ) from exc
    return bin_dir()
