"""The product images for the real nodes: Dockerfile.operator and Dockerfile.trainer built by
hack/build-images.sh (BuildKit; a no-op when their inputs are unchanged) into OCI archives, then
loaded into each real node's containerd (a no-op when a node has that digest already), and into
the nodes started later."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .binaries import HACK
from .cluster import DevCluster

BUILD_SCRIPT = HACK / "build-images.sh"


@dataclass(frozen=True)
class Images:
    """Image refs as the node knows them (use them with imagePullPolicy Never or IfNotPresent)."""

    operator: str
    trainer: str

    @staticmethod
    def split(ref: str) -> tuple[str, str]:
        """ "localhost/x/operator:dev" -> ("localhost/x/operator", "dev") (Helm's repository, tag)."""
        repository, _, tag = ref.rpartition(":")
        return repository, tag


def build() -> Path:
    """Build (or reuse) both archives; return the folder holding operator.tar and trainer.tar."""
    t0 = time.monotonic()
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)
    out = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True)
    print(f"images: built or up to date in {time.monotonic() - t0:.1f}s", flush=True)
    return Path(out.stdout.strip())


def build_and_load(cluster: DevCluster) -> Images:
    folder = build()
    return Images(
        operator=cluster.load_image(folder / "operator.tar"), trainer=cluster.load_image(folder / "trainer.tar")
    )
