"""The dev cluster: control plane + kwok-simulated GPU nodes + a real node (kubelet + containerd)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .controlplane import ControlPlane, free_port
from .node import NODE_NAME, DevNode
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

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": "110", "ephemeral-storage": "1Ti"}
        spec: dict[str, Any] = {}
        if self.gpus:
            labels |= {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": self.product,
                "nvidia.com/gpu.count": str(self.gpus),
            }
            resources["nvidia.com/gpu"] = str(self.gpus)
            spec["taints"] = [GPU_TAINT]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
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
    """ControlPlane plus kwok with `nodes`; with `dev_node`, `start_node()` adds the real node
    (finetune_devcluster.node) with `gpus` fake GPUs. The node's namespaces and link are made at
    start() (the apiserver listens on the link), its kubelet and containerd by `start_node()`."""

    def __init__(
        self, workdir: Path | str, nodes: tuple[FakeNode, ...] = DEFAULT_NODES, dev_node: bool = True, gpus: int = 1
    ) -> None:
        self.control_plane = ControlPlane(workdir)
        self.workdir = self.control_plane.workdir
        self.nodes = nodes
        self.kwok: ManagedProcess | None = None
        self.node = DevNode(self.workdir / "node", self.control_plane.logs, gpus) if dev_node else None
        self.node_started = False

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
        try:
            if self.node:
                self.control_plane.logs.mkdir(parents=True, exist_ok=True)
                self.control_plane.address = self.node.prepare().host_ip
            cp = self.control_plane.start(timeout)
            self.kwok = ManagedProcess(
                "kwok",
                [
                    str(cp.bin_dir / "kwok"),
                    f"--kubeconfig={cp.kubeconfig}",
                    f"--config={STAGES_FILE}",
                    f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                    f"--server-address=127.0.0.1:{free_port()}",
                    "--node-lease-duration-seconds=40",
                ],
                cp.logs,
            )
            with self.api_client() as api:
                core = client.CoreV1Api(api)
                for node in self.nodes:
                    try:
                        core.create_node(body=client.V1Node.model_validate(node.manifest()))
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
            ready = {n.metadata.name for n in core.list_node().items if n.metadata and _node_ready(n)}
            if ready >= set(names):
                return
            if self.kwok:
                self.kwok.check_alive()
            if self.node_started and self.node:
                self.node.check_alive()
            time.sleep(0.2)
        raise TimeoutError(f"nodes {names} not Ready after {timeout}s; logs in {self.control_plane.logs}")

    def start_node(self, timeout: float = 180.0) -> str:
        """Start the real node's kubelet, containerd, kube-proxy and device plugin (once); wait until
        the Node is Ready and advertises its GPUs. Returns the node name."""
        if not self.node:
            raise RuntimeError("this DevCluster was made with dev_node=False")
        if not self.node_started:
            self.node_started = True
            self.node.start(self.control_plane, timeout)
            with self.api_client() as api:
                core = client.CoreV1Api(api)
                self._wait_nodes_ready(core, [NODE_NAME], timeout)
                self._wait_gpus(core, timeout)
                self._start_dns(client.AppsV1Api(api), timeout)
        return NODE_NAME

    def _start_dns(self, apps: client.AppsV1Api, timeout: float) -> None:
        """Deploy CoreDNS (the cluster DNS the kubelet points pods at) and wait until it is ready."""
        assert self.node
        kubectl = [str(self.control_plane.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}"]
        done = subprocess.run(
            [*kubectl, "apply", "-f", "-"], input=self.node.dns_manifests(), capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"deploying CoreDNS failed: {done.stderr}")
        deadline = time.monotonic() + timeout
        while not _ready_replicas(apps, "kube-system", "coredns"):
            self.node.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"CoreDNS not ready after {timeout}s; kubectl -n kube-system describe pods")
            time.sleep(0.2)

    def _wait_gpus(self, core: client.CoreV1Api, timeout: float) -> None:
        """Wait until the device plugin's GPUs are allocatable on the node."""
        assert self.node
        want = str(self.node.gpus)
        deadline = time.monotonic() + timeout
        while _allocatable_gpus(core, NODE_NAME) != want:
            self.node.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{NODE_NAME} does not advertise {want} nvidia.com/gpu after {timeout}s; "
                    f"logs in {self.control_plane.logs}"
                )
            time.sleep(0.2)

    def local_claim(self, namespace: str, name: str, host_dir: Path, size: str = "10Gi", timeout: float = 60.0) -> str:
        """A PersistentVolumeClaim `name` bound to a `local` PersistentVolume on the dev node backed
        by `host_dir` (created if missing); returns the PV's name once the claim is Bound. The
        kubelet hands a local volume to the pod's fsGroup, so non-root trainers can write to it."""
        host_dir.mkdir(parents=True, exist_ok=True)
        pv = f"{namespace}-{name}"
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv, "labels": {"finetune.dev/claim-namespace": namespace}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "local": {"path": str(host_dir)},
                "claimRef": {"namespace": namespace, "name": name},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
                                ]
                            }
                        ]
                    }
                },
            },
        }
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": size}},
            },
        }
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_persistent_volume(client.V1PersistentVolume.model_validate(volume))
            core.create_namespaced_persistent_volume_claim(
                namespace, client.V1PersistentVolumeClaim.model_validate(claim)
            )
            deadline = time.monotonic() + timeout
            while _claim_phase(core, namespace, name) != "Bound":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"claim {namespace}/{name} not Bound after {timeout}s")
                time.sleep(0.2)
        return pv

    def stop(self) -> None:
        """Stop kwok, the node and the control plane."""
        if self.kwok:
            self.kwok.stop()
        self.kwok = None
        if self.node:
            self.node.stop()
        self.node_started = False
        self.control_plane.stop()

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# The client's models leave every field optional; the API server always fills those read here.


def _node_ready(node: client.V1Node) -> bool:
    """Ready, and without the not-ready taint (the node controller removes it)."""
    conditions = (node.status.conditions if node.status else None) or []
    taints = (node.spec.taints if node.spec else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions) and not any(
        t.key == "node.kubernetes.io/not-ready" for t in taints
    )


def _ready_replicas(apps: client.AppsV1Api, namespace: str, name: str) -> int:
    status = apps.read_namespaced_deployment(name, namespace).status
    return (status.ready_replicas if status else None) or 0


def _allocatable_gpus(core: client.CoreV1Api, node: str) -> str:
    status = core.read_node(node).status
    return ((status.allocatable if status else None) or {}).get("nvidia.com/gpu", "0")


def _claim_phase(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    status = core.read_namespaced_persistent_volume_claim(name, namespace).status
    return status.phase if status else None
