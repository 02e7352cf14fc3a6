"""No Job for this run (yet, or any more), or the API server refused to create the children."""

from __future__ import annotations

from typing import Any

from finetune_api.protocol import FailureReason
from finetune_api.resource import FineTuneJobSpec, Phase

from ..messages import shorten
from ..reasons import Reason
from ..refusals import ChildrenBlocked
from .base import Verdict


def without_job(
    spec: FineTuneJobSpec, prev: dict[str, Any], job_expected: bool, blocked: ChildrenBlocked | None
) -> Verdict:
    if blocked is not None:
        if blocked.final:
            return Verdict(Phase.FAILED, blocked.reason, shorten(blocked.message))
        return Verdict(Phase.PENDING, blocked.reason, shorten(blocked.message), stalled=True)
    if prev.get("jobName") and not job_expected:
        return Verdict(
            Phase.FAILED,
            FailureReason.JOB_DELETED,
            f"the Job {prev['jobName']} was deleted while the run was "
            f"{(prev.get('phase') or 'pending').lower()}; it is not recreated: "
            "delete and re-create the FineTuneJob to run again",
        )
    if spec.suspend:
        return Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspended by spec.suspend")
    return Verdict(Phase.PENDING, Reason.CREATING, "creating the trainer Job")
