"""A failed Job: the deadline, the kernel's OOM killer, a deleted or disrupted pod, or the
trainer's own exit code and message."""

from __future__ import annotations

from typing import Any

from finetune_api.protocol import EXIT_CODE_REASONS, FailureReason
from finetune_api.resource import FineTuneJobSpec, Phase

from ..messages import one_line, shorten
from ..reasons import NOT_STARTED_REASONS
from ..summaries import parse_summary, pod_condition, terminated_state, true_conditions
from .base import Observed, Verdict
from .completion import awaiting_pod_result


def failed(job: dict[str, Any], spec: FineTuneJobSpec, prev: dict[str, Any], seen: Observed) -> Verdict:
    pod, now = seen.pod, seen.now
    failure = true_conditions(job).get("Failed") or true_conditions(job).get("FailureTarget") or {}
    job_reason = failure.get("reason") or ""
    if job_reason == "DeadlineExceeded":
        return _deadline(job, spec, prev, failure)
    if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp") or disrupted(pod):
        return pod_gone(pod, job_reason, prev.get("podName"))
    term = terminated_state(pod)
    if term:
        return _trainer_exit(term, spec)
    pod_status = pod.get("status") or {}
    if pod_status.get("reason") or pod_status.get("message"):
        return Verdict(
            Phase.FAILED,
            FailureReason.POD_FAILED,
            shorten(f"{pod_status.get('reason', '')}: {pod_status.get('message', '')}".strip(": ")),
        )
    finishing = awaiting_pod_result(
        failure.get("lastTransitionTime"), now, "the Job failed; reading the trainer's exit status"
    )
    if finishing:
        return finishing
    return Verdict(
        Phase.FAILED,
        FailureReason.POD_FAILED,
        shorten(
            f"the Job failed ({job_reason or 'unknown reason'})"
            + (f": {failure.get('message')}" if failure.get("message") else "")
        ),
    )


def _deadline(job: dict[str, Any], spec: FineTuneJobSpec, prev: dict[str, Any], failure: dict[str, Any]) -> Verdict:
    """The Job's activeDeadlineSeconds ran out: its own value (someone may have changed the Job's),
    and, when the trainer never started, the last cause the status showed."""
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds") or spec.active_deadline_seconds
    what = f"activeDeadlineSeconds={deadline}"
    if spec.active_deadline_seconds is not None and deadline != spec.active_deadline_seconds:
        what += f" (the Job's; spec.activeDeadlineSeconds is {spec.active_deadline_seconds})"
    if prev.get("reason") in NOT_STARTED_REASONS and prev.get("message"):
        return Verdict(
            Phase.FAILED,
            FailureReason.DEADLINE_EXCEEDED,
            shorten(
                f"the run exceeded {what} before the trainer started; the last cause was "
                f"{prev['reason']}: {prev['message']}"
            ),
        )
    return Verdict(
        Phase.FAILED,
        FailureReason.DEADLINE_EXCEEDED,
        f"the run exceeded {what} and was stopped" + (f" ({failure.get('message')})" if failure.get("message") else ""),
    )


def _trainer_exit(term: dict[str, Any], spec: FineTuneJobSpec) -> Verdict:
    """The trainer container terminated: its exit code and termination message say why."""
    code = term.get("exitCode")
    raw = term.get("message") or ""
    summary = parse_summary(raw)
    if term.get("reason") == "OOMKilled":
        return Verdict(
            Phase.FAILED,
            FailureReason.OOM_KILLED,
            f"the trainer was killed for exceeding its memory limit ({spec.resources.memory}): "
            "raise resources.memory, or lower training.batchSize / maxSeqLength",
        )
    if summary is not None and summary.outcome == "succeeded":  # exit != 0: not the trainer's own exit
        return Verdict(
            Phase.FAILED,
            FailureReason.POD_FAILED,
            f"the trainer container exited with code {code} although its termination message claims "
            "success: the container did not end the way finetune-train does (was spec.image changed?)",
        )
    detail = one_line(summary.message or "" if summary else raw)
    if code in EXIT_CODE_REASONS:
        reason = EXIT_CODE_REASONS[code]
        return Verdict(
            Phase.FAILED, reason, shorten(detail) if detail else f"the trainer exited with code {code} ({reason})"
        )
    return Verdict(
        Phase.FAILED,
        FailureReason.POD_FAILED,
        shorten(
            f"the trainer exited with code {code}"
            + (f" ({term.get('reason')})" if term.get("reason") else "")
            + (f": {detail}" if detail else "")
        ),
    )


def disrupted(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The pod's DisruptionTarget condition (eviction, preemption, node drain, taint), if True."""
    cond = pod_condition(pod, "DisruptionTarget")
    return cond if cond and cond.get("status") == "True" else None


def pod_gone(pod: dict[str, Any] | None, job_reason: str, last_seen: str | None = None) -> Verdict:
    """The Job failed because its pod was deleted, evicted or lost before the trainer finished;
    ``last_seen`` names it when the pod itself is already gone (status.podName)."""
    name = pod["metadata"].get("name") if pod else last_seen
    what = f"the trainer pod {name}" if name else "the trainer pod"
    disruption = disrupted(pod) if pod else None
    if disruption:
        how = f"was disrupted ({disruption.get('reason')}: {disruption.get('message', '')})".rstrip(": )") + ")"
    else:
        how = "was deleted (or evicted) before the trainer finished"
    return Verdict(
        Phase.FAILED,
        FailureReason.POD_DELETED,
        shorten(
            f"{what} {how}; the Job does not retry it ({job_reason or 'failed'}): "
            "re-create the FineTuneJob to run again (spec.suspend pauses a run without losing it)"
        ),
    )
