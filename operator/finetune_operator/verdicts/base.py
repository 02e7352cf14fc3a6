"""What every situation module is given and returns."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from finetune_api.resource import Phase
from finetune_api.runconfig import FetchPlan

from ..refusals import ChildrenBlocked


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the reconciler saw of a run, besides the FineTuneJob itself."""

    job: dict[str, Any] | None
    """This run's Job (summary), if any."""
    pod: dict[str, Any] | None
    """The Job's pod that speaks for the run (summary), if any: its latest; on several nodes
    ``topology.speaking_pod``."""
    now: dt.datetime
    job_expected: bool = False
    """The Job was just created and the watch has not delivered it yet."""
    blocked: ChildrenBlocked | None = None
    """Why the API server refused the run's children."""
    mount_problem: str | None = None
    """The pod's latest FailedMount event message, when it cannot mount its volumes."""
    patch_refused: str | None = None
    """Why the API server refused the operator's last change to the Job (spec.suspend)."""
    node_gpu_memory_bytes: int | None = None
    """One GPU's memory on the node the pod was bound to (its nvidia.com/gpu.memory label), when known."""
    image_pull_grace_seconds: float = 300.0
    fetch_plans: tuple[FetchPlan, ...] = ()
    """The run's downloads (empty: nothing to fetch, the trainer Job comes at once)."""
    fetch_job: dict[str, Any] | None = None
    """This run's fetch Job (summary), if any."""
    fetch_pod: dict[str, Any] | None = None
    """The fetch Job's latest pod (summary), if any."""
    pods: tuple[dict[str, Any], ...] = ()
    """Every pod of the Job (summaries): on several nodes, each node's."""


@dataclasses.dataclass
class Verdict:
    phase: Phase
    reason: str
    message: str
    stalled: bool = False
    """Cannot progress without someone acting (kstatus Stalled), although not failed."""
    requeue_after: float | None = None
    """Decide again after this many seconds even without a new event (grace periods)."""
    suspend_job: bool = False
    """Suspend the Job (its pod is deleted): the run failed for good but the Job is still active."""
