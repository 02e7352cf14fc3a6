"""A completed Job: a success only with the trainer's own completion record."""

from __future__ import annotations

import datetime as dt
from typing import Any

from finetune_api.protocol import FailureReason
from finetune_api.resource import Phase

from ..messages import shorten
from ..reasons import Reason
from ..summaries import parse_summary, parse_time, terminated_state
from .base import Verdict

RESULT_GRACE_SECONDS = 30.0
"""How long a finished Job's pod may take to show its terminated state before the run is decided without it."""


def completed(job: dict[str, Any], pod: dict[str, Any] | None, now: dt.datetime) -> Verdict:
    term = terminated_state(pod)
    summary = parse_summary((term or {}).get("message"))
    if summary is not None and summary.outcome == "succeeded":
        said = f"; {summary.message}" if summary.message else ""
        return Verdict(Phase.SUCCEEDED, Reason.SUCCEEDED, shorten(f"the adapter is trained and saved{said}"))
    if term is not None:
        return Verdict(
            Phase.FAILED,
            FailureReason.RESULT_MISSING,
            "the trainer pod exited 0 without the trainer's completion record (no TrainerSummary in "
            "its termination message): the container did not run finetune-train to the end",
        )
    finishing = awaiting_pod_result(
        (job.get("status") or {}).get("completionTime"), now, "the Job completed; reading the trainer's result"
    )
    if finishing:
        return finishing
    return Verdict(
        Phase.FAILED,
        FailureReason.RESULT_MISSING,
        "the Job completed but its trainer pod is gone, so the trainer's result was never read: "
        "re-create the FineTuneJob to run again",
    )


def awaiting_pod_result(job_ended: str | None, now: dt.datetime, message: str) -> Verdict | None:
    """Running/Finishing for RESULT_GRACE_SECONDS after the Job ended without the pod's final state
    in view (it may reach us after the Job's), then None: the caller's verdict stands."""
    waited = (now - (parse_time(job_ended) or now)).total_seconds()
    if waited >= RESULT_GRACE_SECONDS:
        return None
    return Verdict(Phase.RUNNING, Reason.FINISHING, message, requeue_after=max(1.0, RESULT_GRACE_SECONDS - waited))
