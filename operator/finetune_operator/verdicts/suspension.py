"""A Job that is suspended, or being suspended: by spec.suspend, or by Kueue until it admits it."""

from __future__ import annotations

from typing import Any

from finetune_api.resource import FineTuneJobSpec, Phase

from ..messages import shorten
from ..reasons import Reason
from ..refusals import NOT_PERMITTED_RETRY_SECONDS
from .base import Verdict


def suspended(job: dict[str, Any], spec: FineTuneJobSpec, patch_refused: str | None) -> Verdict:
    job_suspended = bool((job.get("spec") or {}).get("suspend"))
    if not job_suspended:
        if patch_refused:
            return Verdict(
                Phase.RUNNING,
                Reason.NOT_PERMITTED,
                shorten(
                    f"spec.suspend is true but the operator may no longer change Job {job['metadata']['name']}, "
                    f"which keeps running (retrying every {NOT_PERMITTED_RETRY_SECONDS:.0f}s): {patch_refused}"
                ),
                stalled=True,
                requeue_after=NOT_PERMITTED_RETRY_SECONDS,
            )
        return Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspending the Job")
    if spec.suspend:
        return Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspended by spec.suspend; set it to false to resume")
    if spec.scheduling.queue_name:
        return Verdict(
            Phase.PENDING, Reason.QUEUED, f"waiting for Kueue to admit the Job (queue {spec.scheduling.queue_name})"
        )
    if patch_refused:
        return Verdict(
            Phase.SUSPENDED,
            Reason.NOT_PERMITTED,
            shorten(
                f"spec.suspend is false but the operator may no longer resume Job {job['metadata']['name']} "
                f"(retrying every {NOT_PERMITTED_RETRY_SECONDS:.0f}s): {patch_refused}"
            ),
            stalled=True,
            requeue_after=NOT_PERMITTED_RETRY_SECONDS,
        )
    return Verdict(Phase.PENDING, Reason.RESUMING, "resuming the Job")
