"""The verdict on a run: (FineTuneJob, its Job, the Job's latest Pod, now) -> phase, reason, message.

One module per situation, in the order ``decide`` consults them (JobSet's controllers keep one
file per policy the same way):

0. ``fetching``: no trainer Job yet and the run downloads sources: its fetch Job, until every
   download succeeded (Pending/Fetching), or the download's failure reason.
1. ``creation``: the operator could not create the children (``ChildrenBlocked``), or there is no
   Job yet (or no longer: Failed/JobDeleted, never recreated silently).
2. ``completion``: the Job completed: Succeeded only with the trainer's TrainerSummary (outcome
   succeeded) in the pod's termination message, else Failed/ResultMissing.
3. ``failure``: the Job failed: DeadlineExceeded, OOMKilled, PodDeleted, the trainer's exit code
   through EXIT_CODE_REASONS with its message, else PodFailed.
4. ``memory``: the trainer's memory plan does not fit the GPU of its node: Failed, Job suspended.
5. ``suspension``: the Job is suspended: Suspended (spec.suspend), Pending/Queued (Kueue).
6. ``pod``: the pod: unschedulable, image pull failing (Failed after a grace period, the Job is
   then suspended), container config errors, starting, running.

On several nodes the pod is the one that speaks for the run (``topology.speaking_pod``: the cause
of a failure, a node's pod that cannot start, else node 0's) and ``nodes`` names it in the message.
"""

from __future__ import annotations

from typing import Any

from finetune_api.resource import FineTuneJobSpec

from ..summaries import true_conditions
from .base import Observed, Verdict
from .completion import completed
from .creation import without_job
from .failure import failed
from .fetching import fetching
from .memory import plan_does_not_fit
from .nodes import across_nodes
from .pod import from_pod
from .suspension import suspended

__all__ = ["Observed", "Verdict", "decide"]


def decide(ftj: dict[str, Any], spec: FineTuneJobSpec, seen: Observed) -> Verdict:
    return across_nodes(_decide(ftj, spec, seen), spec, seen)


def _decide(ftj: dict[str, Any], spec: FineTuneJobSpec, seen: Observed) -> Verdict:
    prev = ftj.get("status") or {}
    job = seen.job
    if job is None:
        if seen.fetch_plans and seen.blocked is None and not seen.job_expected and not prev.get("jobName"):
            downloading = fetching(list(seen.fetch_plans), seen.fetch_job, seen.fetch_pod, seen.now)
            if downloading is not None:
                return downloading
        return without_job(spec, prev, seen.job_expected, seen.blocked)
    conds = true_conditions(job)
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return completed(job, seen.pod, seen.now)
    if "Failed" in conds or "FailureTarget" in conds:
        return failed(job, spec, prev, seen)
    too_big = plan_does_not_fit(prev, seen)
    if too_big is not None:
        return too_big
    if (job.get("spec") or {}).get("suspend") or spec.suspend:
        return suspended(job, spec, seen.patch_refused)
    return from_pod(spec, seen)
