"""The dev cluster: control plane + kwok-simulated GPU nodes + real nodes (kubelet + containerd):
one by default, more on demand (`start_nodes`)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import storage
from .controlplane import ControlPlane, free_port
from .node import DevNode, node_name
from .procs import ManagedProcess
from .registry import Registry

STAGES_FILE = Path(__file__).with_name("kwok_stages.yaml")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# Simulated nodes run no containers: only pods that ask for them (the simulation tests) go there;
# the operator's Deployment and real trainer pods stay on the real node.
KWOK_TAINT = {"key": KWOK_ANNOTATION, "value": "fake", "effect": "NoSchedule"}
KWOK_TOLERATION = {"key": KWOK_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class FakeNode:
    """A kwok node; GPU nodes get nvidia.com/gpu capacity, GPU labels and the GPU taint."""

    name: str
    gpus: int = 0
    product: str = ""
    gpu_memory_mib: int = 0
    """One GPU's memory, advertised in the `nvidia.com/gpu.memory` label (GPU feature discovery's)."""
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
                "nvidia.com/gpu.memory": str(self.gpu_memory_mib),
            }
            resources["nvidia.com/gpu"] = str(self.gpus)
        spec["taints"] = [KWOK_TAINT, GPU_TAINT] if self.gpus else [KWOK_TAINT]
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
    FakeNode("gpu-a100-0", 8, "NVIDIA-A100-SXM4-80GB", 81920, cpu="96", memory="1Ti"),
    FakeNode("gpu-a100-1", 8, "NVIDIA-A100-SXM4-80GB", 81920, cpu="96", memory="1Ti"),
    FakeNode("gpu-t4-0", 1, "NVIDIA-Tesla-T4", 15360, cpu="16", memory="64Gi"),
    FakeNode("cpu-0"),
)


class DevCluster:
    """ControlPlane plus kwok with `nodes`; with `dev_node`, `start_node()` adds the real node
    (finetune_devcluster.node) with `gpus` fake GPUs, and `start_nodes(n)` more real nodes, up to
    `real_nodes` by default. The first node's namespaces and link are made at start() (the
    apiserver listens on its link), its kubelet and containerd by `start_node()`; the other nodes
    are made whole by `start_nodes()`."""

    def __init__(
        self,
        workdir: Path | str,
        nodes: tuple[FakeNode, ...] = DEFAULT_NODES,
        dev_node: bool = True,
        gpus: int = 1,
        real_nodes: int = 1,
    ) -> None:
        self.control_plane = ControlPlane(workdir)
        self.workdir = self.control_plane.workdir
        self.nodes = nodes
        self.kwok: ManagedProcess | None = None
        self.node = DevNode(self.workdir / "node", self.control_plane.logs, gpus) if dev_node else None
        self.node_started = False
        self.registry: Registry | None = None
        self.real_nodes = real_nodes
        self.extra_nodes: list[DevNode] = []
        self.archives: list[Path] = []
        """What `load_image` loaded: a node started later imports it too."""

    @property
    def started_nodes(self) -> list[DevNode]:
        """The real nodes whose kubelet runs, first one first."""
        return ([self.node] if self.node and self.node_started else []) + self.extra_nodes

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
            self.check_nodes()
            time.sleep(0.2)
        raise TimeoutError(f"nodes {names} not Ready after {timeout}s; logs in {self.control_plane.logs}")

    def check_nodes(self) -> None:
        """Raise if a process of a started real node exited."""
        for node in self.started_nodes:
            node.check_alive()

    def start_node(self, timeout: float = 180.0) -> str:
        """Start the real node's kubelet, containerd, kube-proxy and device plugin (once); wait until
        the Node is Ready and advertises its GPUs. Returns the node name."""
        if not self.node:
            raise RuntimeError("this DevCluster was made with dev_node=False")
        if not self.node_started:
            self.node_started = True
            self._start(self.node, timeout)
            with self.api_client() as api:
                self._start_dns(client.AppsV1Api(api), timeout)
        return self.node.name

    def start_nodes(self, count: int | None = None, timeout: float = 180.0) -> list[str]:
        """Start the first real node and more, up to `count` (default `real_nodes`), each with its
        own namespaces, link, pod range, containerd and kubelet; return their names. Pods reach
        each other across the nodes through this machine, which routes between the links: every
        node routes the others' pod ranges (and the apiserver's address) through its link."""
        self.start_node(timeout)
        assert self.node
        wanted = count or self.real_nodes
        while len(self.started_nodes) < wanted:
            ordinal = len(self.started_nodes) + 1
            logs = self.control_plane.logs / node_name(ordinal)
            node = DevNode(self.workdir / f"node-{ordinal}", logs, self.node.gpus, ordinal)
            try:
                node.prepare()
                node.route(f"{self.control_plane.address}/32")
                for other in self.started_nodes:
                    other.route(node.pod_cidr)
                    node.route(other.pod_cidr)
                    other.forward()
                node.forward()
                self._start(node, timeout)
            except BaseException:
                node.stop()
                raise
            self.extra_nodes.append(node)
        return [n.name for n in self.started_nodes[:wanted]]

    def _start(self, node: DevNode, timeout: float) -> None:
        """Start a prepared node, import what `load_image` loaded, wait until it is Ready with its GPUs."""
        if self.registry:
            self.registry.trust_on(node.registry_hosts_dir)
        node.start(self.control_plane, timeout)
        for archive in self.archives:
            node.load_image(archive)
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            self._wait_nodes_ready(core, [node.name], timeout)
            self._wait_gpus(core, node, timeout)

    def load_image(self, archive: Path) -> str:
        """Import an OCI archive into every started real node, and into every node started later;
        return its ref."""
        if archive not in self.archives:
            self.archives.append(archive)
        refs = {node.load_image(archive) for node in self.started_nodes}
        if len(refs) != 1:
            raise RuntimeError(f"no real node started to load {archive} into" if not refs else f"refs differ: {refs}")
        return refs.pop()

    def start_registry(self, timeout: float = 60.0) -> Registry:
        """Start (once) an OCI registry on the host end of the node's link, with TLS from the
        cluster CA, which the node's containerd trusts (finetune_devcluster.registry)."""
        if not self.node:
            raise RuntimeError("this DevCluster was made with dev_node=False: no node would reach a registry")
        if self.registry is None:
            cp = self.control_plane
            registry = Registry(self.workdir / "registry", cp.pki, self.node.host_ip, cp.logs).start(timeout)
            for node in [self.node, *self.extra_nodes]:  # every node routes the first link's host end
                registry.trust_on(node.registry_hosts_dir)
            self.registry = registry
        return self.registry

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

    def _wait_gpus(self, core: client.CoreV1Api, node: DevNode, timeout: float) -> None:
        """Wait until the device plugin's GPUs are allocatable on the node."""
        want = str(node.gpus)
        deadline = time.monotonic() + timeout
        while _allocatable_gpus(core, node.name) != want:
            node.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{node.name} does not advertise {want} nvidia.com/gpu after {timeout}s; "
                    f"logs in {self.control_plane.logs}"
                )
            time.sleep(0.2)

    def local_claim(self, namespace: str, name: str, host_dir: Path, size: str = "10Gi", timeout: float = 60.0) -> str:
        """A PersistentVolumeClaim `name` bound to a `local` PersistentVolume on the first real node
        backed by `host_dir` (created if missing); returns the PV's name once the claim is Bound. The
        kubelet hands a local volume to the pod's fsGroup, so non-root trainers can write to it."""
        host_dir.mkdir(parents=True, exist_ok=True)
        with self.api_client() as api:
            return storage.bind_claim(api, namespace, name, storage.local_volume(host_dir), size, timeout)

    def shared_claim(self, namespace: str, name: str, host_dir: Path, size: str = "10Gi", timeout: float = 60.0) -> str:
        """A ReadWriteMany PersistentVolumeClaim `name` that pods on every real node mount at once:
        a hostPath PersistentVolume on `host_dir` (created if missing, made uid/gid 1000's) with no
        node affinity. Returns the PV's name once the claim is Bound."""
        host_dir.mkdir(parents=True, exist_ok=True)
        with self.api_client() as api:
            return storage.bind_claim(api, namespace, name, storage.shared_volume(host_dir), size, timeout)

    def stop(self) -> None:
        """Stop the registry, kwok, the node and the control plane."""
        if self.registry:
            self.registry.stop()
        self.registry = None
        if self.kwok:
            self.kwok.stop()
        self.kwok = None
        for node in reversed(self.extra_nodes):
            node.stop()
        self.extra_nodes = []
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
