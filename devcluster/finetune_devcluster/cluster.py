"""The dev cluster: control plane + kwok-simulated GPU nodes (+ optionally the local runner node)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .controlplane import ControlPlane, free_port
from .procs import ManagedProcess

STAGES_FILE = Path(__file__).with_name("kwok_stages.yaml")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class FakeNode:
    """A kwok node; GPU nodes get nvidia.com/gpu capacity, GPU labels and the GPU taint."""

    name: str
    gpus: int = 0
    product: str = ""
    cpu: str = "32"
    memory: str = "256Gi"

    def manifest(self) -> dict:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "type": "kwok"}
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": "110", "ephemeral-storage": "1Ti"}
        spec: dict = {}
        if self.gpus:
            labels |= {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": self.product,
                       "nvidia.com/gpu.count": str(self.gpus)}
            resources["nvidia.com/gpu"] = str(self.gpus)
            spec["taints"] = [GPU_TAINT]
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": labels,
                         "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": spec,
            "status": {"capacity": resources, "allocatable": resources},
        }


DEFAULT_NODES = (
    FakeNode("gpu-a100-0", 8, "NVIDIA-A100-SXM4-80GB", cpu="96", memory="1Ti"),
    FakeNode("gpu-a100-1", 8, "NVIDIA-A100-SXM4-80GB", cpu="96", memory="1Ti"),
    FakeNode("gpu-t4-0", 1, "NVIDIA-Tesla-T4", cpu="16", memory="64Gi"),
    FakeNode("cpu-0"),
)


class DevCluster:
    """ControlPlane plus kwok with `nodes`; `start_local_runner()` adds a node that really runs pods."""

    def __init__(self, workdir: Path | str, nodes: tuple[FakeNode, ...] = DEFAULT_NODES) -> None:
        self.control_plane = ControlPlane(workdir)
        self.workdir = self.control_plane.workdir
        self.nodes = nodes
        self.kwok: ManagedProcess | None = None
        self.local_runner: ManagedProcess | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def server(self) -> str:
        return self.control_plane.server

    def api_client(self) -> client.ApiClient:
        """A fresh ApiClient for the admin kubeconfig."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def start(self, timeout: float = 60.0) -> DevCluster:
        """Start the control plane and kwok, register the fake nodes and wait until they are Ready."""
        cp = self.control_plane.start(timeout)
        try:
            self.kwok = ManagedProcess("kwok", [
                str(cp.bin_dir / "kwok"), f"--kubeconfig={cp.kubeconfig}", f"--config={STAGES_FILE}",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--server-address=127.0.0.1:{free_port()}", "--node-lease-duration-seconds=40",
            ], cp.logs)
            with self.api_client() as api:
                core = client.CoreV1Api(api)
                for node in self.nodes:
                    try:
                        core.create_node(body=node.manifest())
                    except ApiException as exc:
                        if exc.status != 409:  # kept from an earlier run in the same workdir
                            raise
                self._wait_nodes_ready(core, [n.name for n in self.nodes], timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_nodes_ready(self, core: client.CoreV1Api, names: list[str], timeout: float) -> None:
        """Wait for Ready nodes without the not-ready taint (the node controller removes it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = {n.metadata.name for n in core.list_node().items
                     if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
                     and not any(t.key == "node.kubernetes.io/not-ready" for t in (n.spec.taints or []))}
            if ready >= set(names):
                return
            for proc in (self.kwok, self.local_runner):
                if proc:
                    proc.check_alive()
            time.sleep(0.2)
        raise TimeoutError(f"nodes {names} not Ready after {timeout}s; logs in {self.control_plane.logs}")

    def start_local_runner(self, fake_gpus: int = 1, timeout: float = 30.0) -> None:
        """Start the local-run agent (finetune_devcluster.localnode) as a child process."""
        if self.local_runner:
            return
        from .localnode import NODE_NAME
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        self.local_runner = ManagedProcess("local-runner", [
            sys.executable, "-m", "finetune_devcluster.localnode", "--kubeconfig", str(self.kubeconfig),
            "--workdir", str(self.workdir / "local-runner"), "--fake-gpus", str(fake_gpus),
        ], self.control_plane.logs, env=env)
        with self.api_client() as api:
            self._wait_nodes_ready(client.CoreV1Api(api), [NODE_NAME], timeout)

    def stop(self) -> None:
        """Stop the local runner, kwok and the control plane."""
        for proc in (self.local_runner, self.kwok):
            if proc:
                proc.stop()
        self.local_runner = self.kwok = None
        self.control_plane.stop()

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
