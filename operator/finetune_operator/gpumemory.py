"""The GPU memory of the node a trainer pod was bound to, read from its `nvidia.com/gpu.memory`
label (MiB, as NVIDIA's GPU feature discovery sets it), to check the trainer's memory plan
(`status.plan`) against: a plan that does not fit ends the run in seconds (verdicts/memory.py)."""

from __future__ import annotations

import logging
import time

from .kube import ApiError, KubeClient

logger = logging.getLogger("finetune_operator")
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MIB = 1024 * 1024
KEEP_SECONDS = 300.0  # a node's GPUs do not change; its label is read again after this long


class NodeGpuMemory:
    def __init__(self, client: KubeClient):
        self.client = client
        self._known: dict[str, tuple[float, int | None]] = {}
        self._products: dict[str, tuple[float, int | None]] = {}

    async def smallest_of_product(self, product: str) -> int | None:
        """One GPU's memory on the smallest node of a GPU product (``resources.gpuProduct``): what a
        pod pinned to that product gets at least. None when no such node carries the label."""
        known = self._products.get(product)
        if known is not None and time.monotonic() - known[0] < KEEP_SECONDS:
            return known[1]
        try:
            nodes = await self.client.get("/api/v1/nodes", params={"labelSelector": f"{PRODUCT_LABEL}={product}"})
        except ApiError as e:
            if e.status != 403:
                raise
            logger.warning("cannot list the nodes of GPU product %s: %s", product, e.message)
            nodes = {}
        sizes = [_bytes(n) for n in (nodes or {}).get("items") or []]
        known_sizes = [size for size in sizes if size is not None]
        value = min(known_sizes) if known_sizes and len(known_sizes) == len(sizes) else None
        self._products[product] = (time.monotonic(), value)
        return value

    async def of(self, node: str) -> int | None:
        """Bytes of one GPU of ``node``, or None when it has no such label (or cannot be read)."""
        known = self._known.get(node)
        if known is not None and time.monotonic() - known[0] < KEEP_SECONDS:
            return known[1]
        try:
            labels = ((await self.client.get(f"/api/v1/nodes/{node}")).get("metadata") or {}).get("labels") or {}
        except ApiError as e:
            if e.status not in (403, 404):
                raise
            logger.warning("cannot read node %s's GPU memory label: %s", node, e.message)
            labels = {}
        value = _bytes({"metadata": {"labels": labels}})
        self._known[node] = (time.monotonic(), value)
        return value


def _bytes(node: dict) -> int | None:
    raw = str(((node.get("metadata") or {}).get("labels") or {}).get(GPU_MEMORY_LABEL, ""))
    return int(raw) * MIB if raw.isdigit() else None
