"""A real local Kubernetes cluster for tests and the demo: control plane on loopback, kwok GPU nodes,
and an optional development-only node that runs pods as local processes."""

from .cluster import DEFAULT_NODES, GPU_TOLERATION, DevCluster, FakeNode
from .controlplane import ControlPlane

__all__ = ["DEFAULT_NODES", "GPU_TOLERATION", "ControlPlane", "DevCluster", "FakeNode"]
