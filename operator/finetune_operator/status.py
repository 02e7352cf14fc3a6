"""Pure status computation: (FineTuneJob, its Job, its Pod, now) -> the FineTuneJob's status.

No I/O. ``compute`` returns the status the operator owns (everything but ``progress``, which the
trainer writes, and ``kopf``), plus what the caller should do next (a requeue delay, an Event,
an action such as suspending a Job whose image cannot be pulled).

Decision order:

1. A final phase (Succeeded/Failed) is sticky (the spec is immutable), unless the run's Job is
   still active: a final status that the Job contradicts (written by someone else) is recomputed.
2. A spec that fails the pydantic models (passed the schema somehow) -> Failed/InvalidSpec.
3. The operator could not create the children (``ChildrenBlocked``): a name taken by an object
   this run did not create (NameConflict), a Job or pod the API server refuses (InvalidSpec,
   PodRejected): Failed; not permitted or over quota: Pending, Stalled, retried.
4. No Job: recorded before (``status.jobName``) and not just created -> Failed/JobDeleted
   (never recreated silently); else Pending/Creating (or Suspended).
5. Job Complete -> Succeeded only with the trainer's TrainerSummary (outcome succeeded) in the
   pod's termination message; without it -> Failed/ResultMissing.
6. Job Failed -> DeadlineExceeded (Job condition reason), OOMKilled (container state), PodDeleted
   (the pod was deleted or evicted), the trainer's exit code through EXIT_CODE_REASONS with its
   message, else PodFailed.
6. Job suspended -> Suspended (spec.suspend), or Pending/Queued (Kueue admission).
7. Pod: unschedulable -> Pending/Unschedulable (Stalled, naming the GPU request), image pull
   failing -> Pending/ImagePullFailed (Stalled) and, after ``image_pull_grace_seconds``,
   Failed/ImagePullFailed (the Job is then suspended); running -> Running.

Messages are one line: a trainer's log tail (a crash before it could write its summary) is
reduced to its last meaningful line; the traceback stays in the trainer's log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any

import pydantic

from finetune_api.protocol import EXIT_CODE_REASONS, FailureReason, TrainerSummary
from finetune_api.resource import ConditionType, FineTuneJobSpec, Phase

from . import builders

IMAGE_PULL_REASONS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
}
CONFIG_ERROR_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
MESSAGE_LIMIT = 2048
QUOTA_RETRY_SECONDS = 10.0  # quota frees up as other runs end
NOT_PERMITTED_RETRY_SECONDS = 60.0  # an admin opting the namespace in is rarer
RESULT_GRACE_SECONDS = 30.0
"""How long a completed Job's pod may take to show its terminated state before the run is ResultMissing."""
OWNED_FIELDS = (
    "phase",
    "reason",
    "message",
    "observedGeneration",
    "conditions",
    "jobName",
    "podName",
    "startTime",
    "completionTime",
    "durationSeconds",
    "gpuSeconds",
    "metrics",
    "artifacts",
)


class Reason:
    """``status.reason`` values besides the FailureReasons."""

    CREATING = "Creating"
    WAITING_FOR_POD = "WaitingForPod"
    STARTING = "Starting"
    RUNNING = "Running"
    FINISHING = "Finishing"
    SUSPENDED = "Suspended"
    RESUMING = "Resuming"
    QUEUED = "Queued"
    CONTAINER_CONFIG_ERROR = "ContainerConfigError"
    NOT_PERMITTED = "NotPermitted"
    QUOTA_EXCEEDED = "QuotaExceeded"
    SUCCEEDED = "Succeeded"


@dataclasses.dataclass(frozen=True)
class ChildrenBlocked:
    """Why the operator could not create the run's children: ``final`` ones fail the run, the
    others are tried again after ``retry_after`` seconds."""

    reason: str
    message: str
    final: bool
    retry_after: float = 0.0


@dataclasses.dataclass
class Result:
    status: dict[str, Any]
    """The owned part of the status (wire format, camelCase)."""
    requeue_after: float | None = None
    """Recompute after this many seconds even without a new event (image-pull grace period)."""
    event: tuple[str, str, str] | None = None
    """(type Normal|Warning, reason, message) when phase or reason changed."""
    suspend_job: bool = False
    """Suspend the Job (its pod is deleted): the run failed for good but the Job is still active."""
    transitioned_to_final: bool = False


# --- helpers ----------------------------------------------------------------------------------


def fmt_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    """A readable one-line message from a trainer's message or a log tail: the last meaningful
    line of a Python traceback or of a log, several lines of a message joined with "; "."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if any(line.startswith("Traceback (most recent call last)") for line in lines) or len(lines) > 5:
        return lines[-1]  # a log tail: the exception (or the last thing logged) is at its end
    return "; ".join(lines)


def true_conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return {c.get("type"): c for c in conds if c.get("status") == "True"}


def _pod_condition(pod: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (pod.get("status") or {}).get("conditions") or []
    for c in conditions:
        if c.get("type") == ctype:
            return c
    return None


def trainer_container_status(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    statuses: list[dict[str, Any]] = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == builders.CONTAINER_NAME:
            return cs
    return statuses[0] if statuses else None


def terminated_state(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    cs = trainer_container_status(pod)
    if not cs:
        return None
    return (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")


def parse_summary(message: str | None) -> TrainerSummary | None:
    """The trainer's TrainerSummary from a termination message, or None (e.g. a log tail)."""
    if not message:
        return None
    try:
        return TrainerSummary.model_validate(json.loads(message))
    except (ValueError, pydantic.ValidationError, TypeError):
        return None


def latest_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently created pod of the Job (retries create new ones)."""
    if not pods:
        return None
    return max(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"].get("name", "")))


def gpu_description(spec: FineTuneJobSpec) -> str:
    res = spec.resources
    what = f"{res.gpus} nvidia.com/gpu" if res.gpus else "no GPU"
    if res.gpu_product:
        what += f" of product {res.gpu_product} (node label nvidia.com/gpu.product={res.gpu_product})"
    return what


def unschedulable_message(spec: FineTuneJobSpec, scheduler_message: str) -> str:
    """Why the trainer pod cannot be placed, in the user's terms: its volume claims when the
    scheduler only complains about them (missing or unbound claims: no GPU would help), else the
    GPU count and product it asked for, with the scheduler's own summary."""
    quoted = f" (scheduler: {scheduler_message or 'no message'})"
    lowered = scheduler_message.lower()
    if "persistentvolumeclaim" in lowered and "nvidia.com/gpu" not in lowered:
        missing = sorted(set(re.findall(r'persistentvolumeclaim "([^"]+)" not found', lowered)))
        if missing:
            return _short(
                f"PersistentVolumeClaim {', '.join(missing)} not found in the namespace: create it "
                f"(the trainer mounts {', '.join(sorted(builders.claims(spec)))})" + quoted
            )
        names = ", ".join(sorted(builders.claims(spec)))
        return _short(
            f"the trainer pod cannot be scheduled until its PersistentVolumeClaims ({names}) "
            f"exist and are bound" + quoted
        )
    return _short(
        f"no node can run the trainer pod, which needs {gpu_description(spec)}, "
        f"{spec.resources.cpu} CPU and {spec.resources.memory} memory" + quoted
    )


def refusal(status_code: int, message: str, what: str) -> ChildrenBlocked | None:
    """Why the API server refused to create ``what`` (e.g. ``Job x-trainer``), in the user's terms;
    None for errors that are retried as they are (server errors, a namespace being deleted)."""
    first = one_line(message or "")
    lowered = first.lower()
    if status_code in (400, 422):  # the spec produced an object the server's validation refuses
        return ChildrenBlocked(FailureReason.INVALID_SPEC, _short(f"the API server refused {what}: {first}"), True)
    if status_code != 403 or "being terminated" in lowered:
        return None
    if "exceeded quota" in lowered:
        return ChildrenBlocked(
            Reason.QUOTA_EXCEEDED,
            _short(f"{what} would exceed a ResourceQuota of the namespace (retrying): {first}"),
            False,
            retry_after=QUOTA_RETRY_SECONDS,
        )
    if "cannot create resource" in lowered or "validatingadmissionpolicy" in lowered:
        return ChildrenBlocked(
            Reason.NOT_PERMITTED,
            _short(
                f"the operator may not create {what} here (retrying every {NOT_PERMITTED_RETRY_SECONDS:.0f}s): {first}"
            ),
            False,
            retry_after=NOT_PERMITTED_RETRY_SECONDS,
        )
    # Pod Security, a missing PriorityClass, a LimitRange: admission refuses the pod as specified
    return ChildrenBlocked(FailureReason.POD_REJECTED, _short(f"admission refused {what}: {first}"), True)


# --- the decision -----------------------------------------------------------------------------


@dataclasses.dataclass
class _Verdict:
    phase: Phase
    reason: str
    message: str
    stalled: bool = False
    requeue_after: float | None = None
    suspend_job: bool = False


def _failure(job: dict[str, Any], pod: dict[str, Any] | None, spec: FineTuneJobSpec, now: dt.datetime) -> _Verdict:
    failed = true_conditions(job).get("Failed") or true_conditions(job).get("FailureTarget") or {}
    job_reason = failed.get("reason") or ""
    if job_reason == "DeadlineExceeded":
        return _Verdict(
            Phase.FAILED,
            FailureReason.DEADLINE_EXCEEDED,
            f"the run exceeded activeDeadlineSeconds={spec.active_deadline_seconds} and was stopped"
            + (f" ({failed.get('message')})" if failed.get("message") else ""),
        )
    if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp") or _disrupted(pod):
        return _pod_gone(pod, job_reason)
    term = terminated_state(pod)
    if term:
        code = term.get("exitCode")
        raw = term.get("message") or ""
        summary = parse_summary(raw)
        if term.get("reason") == "OOMKilled":
            return _Verdict(
                Phase.FAILED,
                FailureReason.OOM_KILLED,
                f"the trainer was killed for exceeding its memory limit ({spec.resources.memory}): "
                "raise resources.memory, or lower training.batchSize / maxSeqLength",
            )
        if summary is not None and summary.outcome == "succeeded":  # exit != 0: not the trainer's own exit
            return _Verdict(
                Phase.FAILED,
                FailureReason.POD_FAILED,
                f"the trainer container exited with code {code} although its termination message claims "
                "success: the container did not end the way finetune-train does (was spec.image changed?)",
            )
        detail = one_line(summary.message or "" if summary else raw)
        if code in EXIT_CODE_REASONS:
            reason = EXIT_CODE_REASONS[code]
            return _Verdict(
                Phase.FAILED, reason, _short(detail) if detail else f"the trainer exited with code {code} ({reason})"
            )
        return _Verdict(
            Phase.FAILED,
            FailureReason.POD_FAILED,
            _short(
                f"the trainer exited with code {code}"
                + (f" ({term.get('reason')})" if term.get("reason") else "")
                + (f": {detail}" if detail else "")
            ),
        )
    pod_status = (pod or {}).get("status") or {}
    if pod_status.get("reason") or pod_status.get("message"):
        return _Verdict(
            Phase.FAILED,
            FailureReason.POD_FAILED,
            _short(f"{pod_status.get('reason', '')}: {pod_status.get('message', '')}".strip(": ")),
        )
    finishing = _awaiting_pod_result(
        failed.get("lastTransitionTime"), now, "the Job failed; reading the trainer's exit status"
    )
    if finishing:
        return finishing
    return _Verdict(
        Phase.FAILED,
        FailureReason.POD_FAILED,
        _short(
            f"the Job failed ({job_reason or 'unknown reason'})"
            + (f": {failed.get('message')}" if failed.get("message") else "")
        ),
    )


def _awaiting_pod_result(job_ended: str | None, now: dt.datetime, message: str) -> _Verdict | None:
    """Running/Finishing for RESULT_GRACE_SECONDS after the Job ended without the pod's final state
    in view (it may reach us after the Job's), then None: the caller's verdict stands."""
    waited = (now - (parse_time(job_ended) or now)).total_seconds()
    if waited >= RESULT_GRACE_SECONDS:
        return None
    return _Verdict(Phase.RUNNING, Reason.FINISHING, message, requeue_after=max(1.0, RESULT_GRACE_SECONDS - waited))


def _disrupted(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The pod's DisruptionTarget condition (eviction, preemption, node drain, taint), if True."""
    cond = _pod_condition(pod, "DisruptionTarget")
    return cond if cond and cond.get("status") == "True" else None


def _pod_gone(pod: dict[str, Any] | None, job_reason: str) -> _Verdict:
    """The Job failed because its pod was deleted, evicted or lost before the trainer finished."""
    what = f"the trainer pod {pod['metadata'].get('name')}" if pod else "the trainer pod"
    disruption = _disrupted(pod) if pod else None
    if disruption:
        how = f"was disrupted ({disruption.get('reason')}: {disruption.get('message', '')})".rstrip(": )") + ")"
    else:
        how = "was deleted (or evicted) before the trainer finished"
    return _Verdict(
        Phase.FAILED,
        FailureReason.POD_DELETED,
        _short(
            f"{what} {how}; the Job does not retry it ({job_reason or 'failed'}): "
            "re-create the FineTuneJob to run again (spec.suspend pauses a run without losing it)"
        ),
    )


def _completed(job: dict[str, Any], pod: dict[str, Any] | None, now: dt.datetime) -> _Verdict:
    """Job Complete: a success only with the trainer's own completion record."""
    term = terminated_state(pod)
    summary = parse_summary((term or {}).get("message"))
    if summary is not None and summary.outcome == "succeeded":
        return _Verdict(Phase.SUCCEEDED, Reason.SUCCEEDED, "the adapter is trained and saved")
    if term is not None:
        return _Verdict(
            Phase.FAILED,
            FailureReason.RESULT_MISSING,
            "the trainer pod exited 0 without the trainer's completion record (no TrainerSummary in "
            "its termination message): the container did not run finetune-train to the end",
        )
    finishing = _awaiting_pod_result(
        (job.get("status") or {}).get("completionTime"), now, "the Job completed; reading the trainer's result"
    )
    if finishing:
        return finishing
    return _Verdict(
        Phase.FAILED,
        FailureReason.RESULT_MISSING,
        "the Job completed but its trainer pod is gone, so the trainer's result was never read: "
        "re-create the FineTuneJob to run again",
    )


def _from_pod(
    pod: dict[str, Any] | None, spec: FineTuneJobSpec, now: dt.datetime, image_pull_grace_seconds: float
) -> _Verdict:
    if pod is None:
        return _Verdict(Phase.PENDING, Reason.WAITING_FOR_POD, "the Job has not created the trainer pod yet")
    status = pod.get("status") or {}
    pod_phase = status.get("phase") or "Pending"
    scheduled = _pod_condition(pod, "PodScheduled")
    cs = trainer_container_status(pod) or {}
    waiting = (cs.get("state") or {}).get("waiting") or {}
    if pod_phase == "Pending":
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            return _Verdict(
                Phase.PENDING,
                FailureReason.UNSCHEDULABLE,
                unschedulable_message(spec, scheduled.get("message") or ""),
                stalled=True,
            )
        wreason = waiting.get("reason") or ""
        if wreason in IMAGE_PULL_REASONS:
            image = cs.get("image") or spec.image or "the trainer image"
            since = (
                parse_time((scheduled or {}).get("lastTransitionTime"))
                or parse_time(pod["metadata"].get("creationTimestamp"))
                or now
            )
            elapsed = (now - since).total_seconds()
            message = _short(f"cannot pull image {image}: {wreason}: {waiting.get('message', '')}".rstrip(": "))
            if elapsed >= image_pull_grace_seconds:
                return _Verdict(
                    Phase.FAILED,
                    FailureReason.IMAGE_PULL_FAILED,
                    message + f" (failing for {int(elapsed)}s, the Job was suspended)",
                    suspend_job=True,
                )
            return _Verdict(
                Phase.PENDING,
                FailureReason.IMAGE_PULL_FAILED,
                message + f" (the run fails if this lasts {int(image_pull_grace_seconds)}s)",
                stalled=True,
                requeue_after=max(1.0, image_pull_grace_seconds - elapsed),
            )
        if wreason in CONFIG_ERROR_REASONS:
            return _Verdict(
                Phase.PENDING,
                Reason.CONTAINER_CONFIG_ERROR,
                _short(f"{wreason}: {waiting.get('message', '')}"),
                stalled=True,
            )
        node = (pod.get("spec") or {}).get("nodeName")
        return _Verdict(
            Phase.PENDING,
            Reason.STARTING,
            f"the trainer pod is starting on node {node}" if node else "the trainer pod is being scheduled",
        )
    if pod_phase == "Running":
        return _Verdict(Phase.RUNNING, Reason.RUNNING, f"training on node {(pod.get('spec') or {}).get('nodeName')}")
    return _Verdict(Phase.RUNNING, Reason.FINISHING, f"the trainer pod is {pod_phase}; waiting for the Job")


def _verdict(
    ftj: dict[str, Any],
    spec: FineTuneJobSpec,
    job: dict[str, Any] | None,
    pod: dict[str, Any] | None,
    now: dt.datetime,
    job_expected: bool,
    image_pull_grace_seconds: float,
    blocked: ChildrenBlocked | None,
) -> _Verdict:
    prev = ftj.get("status") or {}
    if blocked is not None and job is None:
        if blocked.final:
            return _Verdict(Phase.FAILED, blocked.reason, _short(blocked.message))
        return _Verdict(Phase.PENDING, blocked.reason, _short(blocked.message), stalled=True)
    if job is None:
        if prev.get("jobName") and not job_expected:
            return _Verdict(
                Phase.FAILED,
                FailureReason.JOB_DELETED,
                f"the Job {prev['jobName']} was deleted while the run was "
                f"{(prev.get('phase') or 'pending').lower()}; it is not recreated: "
                "delete and re-create the FineTuneJob to run again",
            )
        if spec.suspend:
            return _Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspended by spec.suspend")
        return _Verdict(Phase.PENDING, Reason.CREATING, "creating the trainer Job")
    conds = true_conditions(job)
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return _completed(job, pod, now)
    if "Failed" in conds or "FailureTarget" in conds:
        return _failure(job, pod, spec, now)
    if (job.get("spec") or {}).get("suspend"):
        if spec.suspend:
            return _Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspended by spec.suspend; set it to false to resume")
        if spec.scheduling.queue_name:
            return _Verdict(
                Phase.PENDING, Reason.QUEUED, f"waiting for Kueue to admit the Job (queue {spec.scheduling.queue_name})"
            )
        return _Verdict(Phase.PENDING, Reason.RESUMING, "resuming the Job")
    if spec.suspend:
        return _Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspending the Job")
    return _from_pod(pod, spec, now, image_pull_grace_seconds)


def _condition(
    prev: dict[str | None, dict[str, Any]],
    ctype: str,
    true: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> dict[str, Any]:
    status = "True" if true else "False"
    old = prev.get(ctype)
    ltt = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") else now
    cond = {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": ltt}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def _conditions(
    v: _Verdict, prev_conditions: list[dict[str, Any]], pod: dict[str, Any] | None, generation: int | None, now: str
) -> list[dict[str, Any]]:
    prev: dict[str | None, dict[str, Any]] = {c.get("type"): c for c in prev_conditions or []}
    reason, message = str(v.reason), v.message
    succeeded = v.phase is Phase.SUCCEEDED
    failed = v.phase is Phase.FAILED
    suspended = v.phase is Phase.SUSPENDED
    stalled = failed or v.stalled
    reconciling = v.phase in (Phase.PENDING, Phase.RUNNING) and not stalled
    out = [
        _condition(prev, ConditionType.READY, succeeded, reason, message, generation, now),
        _condition(
            prev, ConditionType.RECONCILING, reconciling, reason, message if reconciling else "", generation, now
        ),
        _condition(prev, ConditionType.STALLED, stalled, reason, message if stalled else "", generation, now),
        _condition(prev, ConditionType.SUCCEEDED, succeeded, reason, message if succeeded else "", generation, now),
        _condition(prev, ConditionType.FAILED, failed, reason, message if failed else "", generation, now),
        _condition(prev, ConditionType.SUSPENDED, suspended, reason, message if suspended else "", generation, now),
    ]
    scheduled = _pod_condition(pod, "PodScheduled") if pod else None
    if pod and scheduled is not None:
        ok = scheduled.get("status") == "True"
        node = (pod.get("spec") or {}).get("nodeName")
        out.append(
            _condition(
                prev,
                ConditionType.SCHEDULED,
                ok,
                "Scheduled" if ok else (scheduled.get("reason") or "Pending"),
                f"on node {node}" if ok and node else (message if v.reason == FailureReason.UNSCHEDULABLE else ""),
                generation,
                now,
            )
        )
    elif ConditionType.SCHEDULED in prev:
        kept = dict(prev[ConditionType.SCHEDULED])
        if generation is not None:
            kept["observedGeneration"] = generation
        out.append(kept)
    else:
        out.append(_condition(prev, ConditionType.SCHEDULED, False, "WaitingForPod", "", generation, now))
    return out


def _times(
    job: dict[str, Any] | None, pod: dict[str, Any] | None, prev: dict[str, Any], final: bool, now: dt.datetime
) -> tuple[str | None, str | None]:
    cs = trainer_container_status(pod) or {}
    state = cs.get("state") or {}
    term = terminated_state(pod)
    start = (
        (state.get("running") or {}).get("startedAt")
        or (term or {}).get("startedAt")
        or prev.get("startTime")
        or ((job or {}).get("status") or {}).get("startTime")
    )
    end = None
    if final:
        job_status = (job or {}).get("status") or {}
        failed = true_conditions(job).get("Failed") or true_conditions(job).get("FailureTarget") or {}
        end = (
            (term or {}).get("finishedAt")
            or job_status.get("completionTime")
            or failed.get("lastTransitionTime")
            or fmt_time(now)
        )
    return start, end


def job_finished(job: dict[str, Any] | None) -> bool:
    return bool({"Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"} & set(true_conditions(job)))


def _final_is_trusted(prev: dict[str, Any], job: dict[str, Any] | None) -> bool:
    """A recorded final phase stands unless the run's Job is still active: then it was not the
    operator's verdict (a run failed for a failing image pull has its Job suspended, not finished)."""
    if job is None or job_finished(job):
        return True
    return prev.get("reason") == FailureReason.IMAGE_PULL_FAILED and bool((job.get("spec") or {}).get("suspend"))


FINAL_PHASES = frozenset(p.value for p in Phase if p.is_final)


def is_final(phase: str | None) -> bool:
    """``Phase.is_final`` for a phase as stored (a string, or None before the first status)."""
    return phase in FINAL_PHASES


def compute(
    ftj: dict[str, Any],
    job: dict[str, Any] | None,
    pod: dict[str, Any] | None,
    *,
    now: dt.datetime | None = None,
    job_expected: bool = False,
    image_pull_grace_seconds: float = 300.0,
    blocked: ChildrenBlocked | None = None,
) -> Result:
    """The FineTuneJob's operator-owned status, given its Job (only this run's: the caller checks
    the owner uid), the Job's latest Pod, and why creating the children failed, if it did."""
    now = now or dt.datetime.now(dt.UTC)
    now_s = fmt_time(now)
    meta = ftj.get("metadata") or {}
    prev = ftj.get("status") or {}
    generation = meta.get("generation")
    prev_phase = prev.get("phase")

    if is_final(prev_phase) and _final_is_trusted(prev, job):
        kept = {k: v for k, v in prev.items() if k in OWNED_FIELDS}
        kept["observedGeneration"] = generation
        kept["conditions"] = [
            {**c, "observedGeneration": generation} if generation is not None else c
            for c in prev.get("conditions") or []
        ]
        return Result(status=_clean(kept))

    try:
        spec = builders.parse_spec(ftj)
    except builders.InvalidSpec as e:
        v = _Verdict(Phase.FAILED, FailureReason.INVALID_SPEC, _short(str(e)))
        status: dict[str, Any] = {
            "phase": v.phase.value,
            "reason": v.reason,
            "message": v.message,
            "observedGeneration": generation,
            "conditions": _conditions(v, prev.get("conditions") or [], None, generation, now_s),
            "completionTime": now_s,
        }
        return _result(status, prev, v)

    v = _verdict(ftj, spec, job, pod, now, job_expected, image_pull_grace_seconds, blocked)
    final = v.phase.is_final
    status = {
        "phase": v.phase.value,
        "reason": str(v.reason),
        "message": v.message,
        "observedGeneration": generation,
        "conditions": _conditions(v, prev.get("conditions") or [], pod, generation, now_s),
        "jobName": (job or {}).get("metadata", {}).get("name") or prev.get("jobName"),
        "podName": (pod or {}).get("metadata", {}).get("name") or prev.get("podName"),
    }
    start, end = _times(job, pod, prev, final, now)
    status["startTime"] = start
    if final:
        status["completionTime"] = end
        started, ended = parse_time(start), parse_time(end)
        if started and ended:
            duration = max(0.0, (ended - started).total_seconds())
            status["durationSeconds"] = duration
            status["gpuSeconds"] = duration * spec.resources.gpus
    term = terminated_state(pod)
    summary = parse_summary((term or {}).get("message"))
    if summary is not None and summary.metrics and (summary.outcome == "failed" or v.phase is Phase.SUCCEEDED):
        status["metrics"] = dict(summary.metrics)
    if v.phase is Phase.SUCCEEDED:
        meta_ns, meta_name = meta.get("namespace", ""), meta.get("name", "")
        artifacts: dict[str, Any] = {"pvc": spec.output.pvc, "path": builders.output_subpath(spec, meta_ns, meta_name)}
        if summary is not None and summary.artifacts is not None:
            mount = builders.pvc_mount_path(spec.output.pvc) + "/"
            if summary.artifacts.path.startswith(mount):
                artifacts["path"] = summary.artifacts.path[len(mount) :]
            artifacts["sizeBytes"] = summary.artifacts.size_bytes
            if summary.artifacts.sha256:
                artifacts["sha256"] = summary.artifacts.sha256
        status["artifacts"] = artifacts
    return _result(status, prev, v)


def _clean(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if v is not None and v != {} and v != []}


def _result(status: dict[str, Any], prev: dict[str, Any], v: _Verdict) -> Result:
    status = _clean(status)
    event = None
    if (prev.get("phase"), prev.get("reason")) != (status["phase"], status["reason"]):
        warning = v.phase is Phase.FAILED or v.stalled
        event = ("Warning" if warning else "Normal", status["reason"], f"{status['phase']}: {status['message']}")
    return Result(
        status=status,
        requeue_after=v.requeue_after,
        event=event,
        suspend_job=v.suspend_job,
        transitioned_to_final=v.phase.is_final and not is_final(prev.get("phase")),
    )


def owned_part(status: dict[str, Any] | None) -> dict[str, Any]:
    """The operator-owned fields of a stored status (to compare with ``compute``'s output)."""
    return {k: v for k, v in (status or {}).items() if k in OWNED_FIELDS}


def merge_patch(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch turning the owned part of ``old`` into ``new`` (None when equal). Fields
    the operator does not own (``progress``) are never touched."""
    old_owned = owned_part(old)
    if old_owned == new:
        return None
    patch: dict[str, Any] = {k: v for k, v in new.items() if old_owned.get(k) != v}
    for k in old_owned:
        if k not in new:
            patch[k] = None
    # merge patch on a map replaces nested maps key by key; send whole values for maps we own
    return patch


def controller_uid(obj: dict[str, Any]) -> str | None:
    """The uid of the object's controller (its controlling owner reference), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            uid: str | None = ref.get("uid")
            return uid
    return None


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """The part of a Job the operator keeps in memory."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "creationTimestamp": meta.get("creationTimestamp"),
            "controllerUid": controller_uid(job),
        },
        "spec": {"suspend": spec.get("suspend"), "ttlSecondsAfterFinished": spec.get("ttlSecondsAfterFinished")},
        "status": {
            k: v
            for k, v in (job.get("status") or {}).items()
            if k in ("conditions", "startTime", "completionTime", "active", "failed", "succeeded")
        },
    }


def pod_summary(pod: dict[str, Any]) -> dict[str, Any]:
    """The part of a Pod the operator keeps in memory."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "creationTimestamp": meta.get("creationTimestamp"),
            "deletionTimestamp": meta.get("deletionTimestamp"),
            "controllerUid": controller_uid(pod),
        },
        "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")},
        "status": {
            k: v
            for k, v in status.items()
            if k in ("phase", "reason", "message", "conditions", "containerStatuses", "startTime")
        },
    }
