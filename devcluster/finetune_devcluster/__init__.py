"""A real local Kubernetes cluster for tests and the demo: control plane on this machine, kwok GPU
nodes for scale, and a real node (kubelet + containerd + kube-proxy) that runs pods' images."""

from .cluster import DEFAULT_NODES, GPU_TOLERATION, KWOK_TOLERATION, DevCluster, FakeNode
from .controlplane import ControlPlane

__all__ = ["DEFAULT_NODES", "GPU_TOLERATION", "KWOK_TOLERATION", "ControlPlane", "DevCluster", "FakeNode"]
