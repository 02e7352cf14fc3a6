"""A trainer whose memory plan (`status.plan`, written before the model loads) does not fit the
GPU of the node it was bound to: Failed/InsufficientGPUMemory in seconds, and the Job suspended.
(On a GPU the trainer checks the CUDA device itself and exits with the same reason.)"""

from __future__ import annotations

from typing import Any

from finetune_api.protocol import FailureReason
from finetune_api.resource import Phase

from ..gpumemory import GPU_MEMORY_LABEL
from ..messages import shorten
from ..summaries import node_name
from .base import Observed, Verdict

GIB = 1024**3


def plan_does_not_fit(prev: dict[str, Any], seen: Observed) -> Verdict | None:
    plan = prev.get("plan") or {}
    required, gpu = plan.get("requiredBytes"), seen.node_gpu_memory_bytes
    if not required or not gpu or required <= gpu:
        return None
    if plan.get("fits") is False and plan.get("gpuMemoryBytes"):
        return None  # the trainer planned for a known GPU and exits InsufficientGPUMemory itself (exit 14)
    said = (
        f"the trainer's memory plan needs {required / GIB:.1f} GiB of GPU memory (predicted peak "
        f"{plan.get('predictedPeakGiB', 0):.1f} GiB) but a GPU of node {node_name(seen.pod)} has {gpu / GIB:.1f} GiB "
        f"(its {GPU_MEMORY_LABEL} label)"
    )
    if plan.get("suggestion"):
        said += f": {plan['suggestion']}"
    return Verdict(Phase.FAILED, FailureReason.INSUFFICIENT_GPU_MEMORY, shorten(said), suspend_job=True)
