"""Pure status computation: (FineTuneJob, its Job, its Pod, now) -> the FineTuneJob's status.

No I/O. ``compute`` returns the status the operator owns (everything but ``progress``, which the
trainer writes, and ``kopf``), plus what the caller should do next (a requeue delay, an Event,
an action such as suspending a Job whose image cannot be pulled).

Decision order:

1. A final phase (Succeeded/Failed) is sticky: spec is immutable, so nothing changes it.
2. A spec that fails the pydantic models (passed the schema somehow) -> Failed/InvalidSpec.
3. No Job: recorded before (``status.jobName``) and not just created -> Failed/JobDeleted
   (never recreated silently); else Pending/Creating (or Suspended).
4. Job Complete -> Succeeded (metrics, artifacts from the trainer's TrainerSummary).
5. Job Failed -> DeadlineExceeded (Job condition reason), OOMKilled (container state), the trainer's
   exit code through EXIT_CODE_REASONS with its message, else PodFailed.
6. Job suspended -> Suspended (spec.suspend), or Pending/Queued (Kueue admission).
7. Pod: unschedulable -> Pending/Unschedulable (Stalled, naming the GPU request), image pull
   failing -> Pending/ImagePullFailed (Stalled) and, after ``image_pull_grace_seconds``,
   Failed/ImagePullFailed (the Job is then suspended); running -> Running.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pydantic

from finetune_api.protocol import EXIT_CODE_REASONS, FailureReason, TrainerSummary
from finetune_api.resource import ConditionType, FineTuneJobSpec, Phase

from . import builders

IMAGE_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                      "RegistryUnavailable"}
CONFIG_ERROR_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
MESSAGE_LIMIT = 2048
OWNED_FIELDS = ("phase", "reason", "message", "observedGeneration", "conditions", "jobName", "podName",
                "startTime", "completionTime", "durationSeconds", "gpuSeconds", "metrics", "artifacts")


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
    SUCCEEDED = "Succeeded"


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
    return t.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _true_conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return {c.get("type"): c for c in conds if c.get("status") == "True"}


def _pod_condition(pod: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def trainer_container_status(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == builders.CONTAINER_NAME:
            return cs
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
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
    if "PersistentVolumeClaim" in scheduler_message and "nvidia.com/gpu" not in scheduler_message:
        names = ", ".join(sorted(builders.claims(spec)))
        return _short(f"the trainer pod cannot be scheduled until its PersistentVolumeClaims ({names}) "
                      f"exist and are bound" + quoted)
    return _short(f"no node can run the trainer pod, which needs {gpu_description(spec)}, "
                  f"{spec.resources.cpu} CPU and {spec.resources.memory} memory" + quoted)


# --- the decision -----------------------------------------------------------------------------


@dataclasses.dataclass
class _Verdict:
    phase: Phase
    reason: str
    message: str
    stalled: bool = False
    requeue_after: float | None = None
    suspend_job: bool = False


def _failure(job: dict[str, Any], pod: dict[str, Any] | None, spec: FineTuneJobSpec) -> _Verdict:
    failed = _true_conditions(job).get("Failed") or _true_conditions(job).get("FailureTarget") or {}
    job_reason = failed.get("reason") or ""
    if job_reason == "DeadlineExceeded":
        return _Verdict(Phase.FAILED, FailureReason.DEADLINE_EXCEEDED,
                        f"the run exceeded activeDeadlineSeconds={spec.active_deadline_seconds} and was stopped"
                        + (f" ({failed.get('message')})" if failed.get("message") else ""))
    term = terminated_state(pod)
    if term:
        code = term.get("exitCode")
        raw = term.get("message") or ""
        summary = parse_summary(raw)
        if term.get("reason") == "OOMKilled":
            return _Verdict(Phase.FAILED, FailureReason.OOM_KILLED,
                            f"the trainer was killed for exceeding its memory limit ({spec.resources.memory}): "
                            "raise resources.memory, or lower training.batchSize / maxSeqLength")
        detail = (summary.message if summary and summary.message else raw) or ""
        if code in EXIT_CODE_REASONS:
            reason = EXIT_CODE_REASONS[code]
            return _Verdict(Phase.FAILED, reason,
                            _short(detail) if detail else f"the trainer exited with code {code} ({reason})")
        return _Verdict(Phase.FAILED, FailureReason.POD_FAILED,
                        _short(f"the trainer exited with code {code}"
                               + (f" ({term.get('reason')})" if term.get("reason") else "")
                               + (f": {detail}" if detail else "")))
    pod_status = (pod or {}).get("status") or {}
    if pod_status.get("reason") or pod_status.get("message"):
        return _Verdict(Phase.FAILED, FailureReason.POD_FAILED,
                        _short(f"{pod_status.get('reason', '')}: {pod_status.get('message', '')}".strip(": ")))
    return _Verdict(Phase.FAILED, FailureReason.POD_FAILED,
                    _short(f"the Job failed ({job_reason or 'unknown reason'})"
                           + (f": {failed.get('message')}" if failed.get("message") else "")))


def _from_pod(pod: dict[str, Any] | None, spec: FineTuneJobSpec, now: dt.datetime,
              image_pull_grace_seconds: float) -> _Verdict:
    if pod is None:
        return _Verdict(Phase.PENDING, Reason.WAITING_FOR_POD, "the Job has not created the trainer pod yet")
    status = pod.get("status") or {}
    pod_phase = status.get("phase") or "Pending"
    scheduled = _pod_condition(pod, "PodScheduled")
    cs = trainer_container_status(pod) or {}
    waiting = (cs.get("state") or {}).get("waiting") or {}
    if pod_phase == "Pending":
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            return _Verdict(Phase.PENDING, FailureReason.UNSCHEDULABLE,
                            unschedulable_message(spec, scheduled.get("message") or ""), stalled=True)
        wreason = waiting.get("reason") or ""
        if wreason in IMAGE_PULL_REASONS:
            image = (cs.get("image") or spec.image or "the trainer image")
            since = parse_time((scheduled or {}).get("lastTransitionTime")) or parse_time(
                pod["metadata"].get("creationTimestamp")) or now
            elapsed = (now - since).total_seconds()
            message = _short(f"cannot pull image {image}: {wreason}: {waiting.get('message', '')}".rstrip(": "))
            if elapsed >= image_pull_grace_seconds:
                return _Verdict(Phase.FAILED, FailureReason.IMAGE_PULL_FAILED,
                                message + f" (failing for {int(elapsed)}s, the Job was suspended)",
                                suspend_job=True)
            return _Verdict(Phase.PENDING, FailureReason.IMAGE_PULL_FAILED,
                            message + f" (the run fails if this lasts {int(image_pull_grace_seconds)}s)",
                            stalled=True, requeue_after=max(1.0, image_pull_grace_seconds - elapsed))
        if wreason in CONFIG_ERROR_REASONS:
            return _Verdict(Phase.PENDING, Reason.CONTAINER_CONFIG_ERROR,
                            _short(f"{wreason}: {waiting.get('message', '')}"), stalled=True)
        node = (pod.get("spec") or {}).get("nodeName")
        return _Verdict(Phase.PENDING, Reason.STARTING,
                        f"the trainer pod is starting on node {node}" if node else "the trainer pod is being scheduled")
    if pod_phase == "Running":
        return _Verdict(Phase.RUNNING, Reason.RUNNING, f"training on node {(pod.get('spec') or {}).get('nodeName')}")
    return _Verdict(Phase.RUNNING, Reason.FINISHING, f"the trainer pod is {pod_phase}; waiting for the Job")


def _verdict(ftj: dict[str, Any], spec: FineTuneJobSpec, job: dict[str, Any] | None, pod: dict[str, Any] | None,
             now: dt.datetime, job_expected: bool, image_pull_grace_seconds: float) -> _Verdict:
    prev = ftj.get("status") or {}
    if job is None:
        if prev.get("jobName") and not job_expected:
            return _Verdict(Phase.FAILED, FailureReason.JOB_DELETED,
                            f"the Job {prev['jobName']} was deleted while the run was "
                            f"{(prev.get('phase') or 'pending').lower()}; it is not recreated: "
                            "delete and re-create the FineTuneJob to run again")
        if spec.suspend:
            return _Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspended by spec.suspend")
        return _Verdict(Phase.PENDING, Reason.CREATING, "creating the trainer Job")
    conds = _true_conditions(job)
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return _Verdict(Phase.SUCCEEDED, Reason.SUCCEEDED, "the adapter is trained and saved")
    if "Failed" in conds or "FailureTarget" in conds:
        return _failure(job, pod, spec)
    if (job.get("spec") or {}).get("suspend"):
        if spec.suspend:
            return _Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspended by spec.suspend; set it to false to resume")
        if spec.scheduling.queue_name:
            return _Verdict(Phase.PENDING, Reason.QUEUED,
                            f"waiting for Kueue to admit the Job (queue {spec.scheduling.queue_name})")
        return _Verdict(Phase.PENDING, Reason.RESUMING, "resuming the Job")
    if spec.suspend:
        return _Verdict(Phase.SUSPENDED, Reason.SUSPENDED, "suspending the Job")
    return _from_pod(pod, spec, now, image_pull_grace_seconds)


def _condition(prev: dict[str, dict[str, Any]], ctype: str, true: bool, reason: str, message: str,
               generation: int | None, now: str) -> dict[str, Any]:
    status = "True" if true else "False"
    old = prev.get(ctype)
    ltt = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") else now
    cond = {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": ltt}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def _conditions(v: _Verdict, prev_conditions: list[dict[str, Any]], pod: dict[str, Any] | None,
                generation: int | None, now: str) -> list[dict[str, Any]]:
    prev = {c.get("type"): c for c in prev_conditions or []}
    reason, message = str(v.reason), v.message
    succeeded = v.phase is Phase.SUCCEEDED
    failed = v.phase is Phase.FAILED
    suspended = v.phase is Phase.SUSPENDED
    stalled = failed or v.stalled
    reconciling = v.phase in (Phase.PENDING, Phase.RUNNING) and not stalled
    out = [
        _condition(prev, ConditionType.READY, succeeded, reason, message, generation, now),
        _condition(prev, ConditionType.RECONCILING, reconciling, reason, message if reconciling else "", generation, now),
        _condition(prev, ConditionType.STALLED, stalled, reason, message if stalled else "", generation, now),
        _condition(prev, ConditionType.SUCCEEDED, succeeded, reason, message if succeeded else "", generation, now),
        _condition(prev, ConditionType.FAILED, failed, reason, message if failed else "", generation, now),
        _condition(prev, ConditionType.SUSPENDED, suspended, reason, message if suspended else "", generation, now),
    ]
    scheduled = _pod_condition(pod, "PodScheduled") if pod else None
    if scheduled is not None:
        ok = scheduled.get("status") == "True"
        node = (pod.get("spec") or {}).get("nodeName")
        out.append(_condition(prev, ConditionType.SCHEDULED, ok, "Scheduled" if ok else (scheduled.get("reason") or "Pending"),
                              f"on node {node}" if ok and node else (message if v.reason == FailureReason.UNSCHEDULABLE else ""),
                              generation, now))
    elif ConditionType.SCHEDULED in prev:
        kept = dict(prev[ConditionType.SCHEDULED])
        if generation is not None:
            kept["observedGeneration"] = generation
        out.append(kept)
    else:
        out.append(_condition(prev, ConditionType.SCHEDULED, False, "WaitingForPod", "", generation, now))
    return out


def _times(job: dict[str, Any] | None, pod: dict[str, Any] | None, prev: dict[str, Any], final: bool,
           now: dt.datetime) -> tuple[str | None, str | None]:
    cs = trainer_container_status(pod) or {}
    state = cs.get("state") or {}
    term = terminated_state(pod)
    start = ((state.get("running") or {}).get("startedAt") or (term or {}).get("startedAt")
             or prev.get("startTime") or ((job or {}).get("status") or {}).get("startTime"))
    end = None
    if final:
        job_status = (job or {}).get("status") or {}
        failed = _true_conditions(job).get("Failed") or _true_conditions(job).get("FailureTarget") or {}
        end = ((term or {}).get("finishedAt") or job_status.get("completionTime")
               or failed.get("lastTransitionTime") or fmt_time(now))
    return start, end


def compute(ftj: dict[str, Any], job: dict[str, Any] | None, pod: dict[str, Any] | None, *,
            now: dt.datetime | None = None, job_expected: bool = False,
            image_pull_grace_seconds: float = 300.0) -> Result:
    """The FineTuneJob's operator-owned status, given its Job and the Job's latest Pod."""
    now = now or dt.datetime.now(dt.timezone.utc)
    now_s = fmt_time(now)
    meta = ftj.get("metadata") or {}
    prev = ftj.get("status") or {}
    generation = meta.get("generation")
    prev_phase = prev.get("phase")

    if prev_phase in (Phase.SUCCEEDED, Phase.FAILED):
        kept = {k: v for k, v in prev.items() if k in OWNED_FIELDS}
        kept["observedGeneration"] = generation
        kept["conditions"] = [{**c, "observedGeneration": generation} if generation is not None else c
                              for c in prev.get("conditions") or []]
        return Result(status=_clean(kept))

    try:
        spec = builders.parse_spec(ftj)
    except builders.InvalidSpec as e:
        v = _Verdict(Phase.FAILED, FailureReason.INVALID_SPEC, _short(str(e)))
        status = {"phase": v.phase.value, "reason": v.reason, "message": v.message, "observedGeneration": generation,
                  "conditions": _conditions(v, prev.get("conditions") or [], None, generation, now_s),
                  "completionTime": now_s}
        return _result(status, prev, v)

    v = _verdict(ftj, spec, job, pod, now, job_expected, image_pull_grace_seconds)
    final = v.phase.is_final
    status: dict[str, Any] = {
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
        s, e = parse_time(start), parse_time(end)
        if s and e:
            duration = max(0.0, (e - s).total_seconds())
            status["durationSeconds"] = duration
            status["gpuSeconds"] = duration * spec.resources.gpus
    term = terminated_state(pod)
    summary = parse_summary((term or {}).get("message"))
    if summary is not None:
        if summary.metrics:
            status["metrics"] = dict(summary.metrics)
    if v.phase is Phase.SUCCEEDED:
        meta_ns, meta_name = meta.get("namespace", ""), meta.get("name", "")
        artifacts: dict[str, Any] = {"pvc": spec.output.pvc, "path": builders.output_subpath(spec, meta_ns, meta_name)}
        if summary is not None and summary.artifacts is not None:
            mount = builders.pvc_mount_path(spec.output.pvc) + "/"
            if summary.artifacts.path.startswith(mount):
                artifacts["path"] = summary.artifacts.path[len(mount):]
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
    return Result(status=status, requeue_after=v.requeue_after, event=event, suspend_job=v.suspend_job,
                  transitioned_to_final=v.phase.is_final and prev.get("phase") not in (Phase.SUCCEEDED, Phase.FAILED))


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


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """The part of a Job the operator keeps in memory."""
    meta = job.get("metadata") or {}
    return {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                     "creationTimestamp": meta.get("creationTimestamp")},
        "spec": {"suspend": (job.get("spec") or {}).get("suspend")},
        "status": {k: v for k, v in (job.get("status") or {}).items()
                   if k in ("conditions", "startTime", "completionTime", "active", "failed", "succeeded")},
    }


def pod_summary(pod: dict[str, Any]) -> dict[str, Any]:
    """The part of a Pod the operator keeps in memory."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                     "creationTimestamp": meta.get("creationTimestamp"),
                     "deletionTimestamp": meta.get("deletionTimestamp")},
        "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")},
        "status": {k: v for k, v in status.items()
                   if k in ("phase", "reason", "message", "conditions", "containerStatuses", "startTime")},
    }
