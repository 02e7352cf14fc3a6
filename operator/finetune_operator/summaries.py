"""What the operator keeps of its Jobs and Pods, and how it reads them (pure).

The kopf indexes hold ``job_summary``/``pod_summary`` of every Job and Pod labelled with a
FineTuneJob, never the whole objects; the readers below work on both the summaries and full
objects. Times are the API server's RFC 3339 strings.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pydantic

from finetune_api.protocol import TrainerSummary

from .builders import CONTAINER_NAME

JOB_STATUS_FIELDS = ("conditions", "startTime", "completionTime", "active", "failed", "succeeded")
POD_STATUS_FIELDS = ("phase", "reason", "message", "conditions", "containerStatuses", "startTime")
FINISHED_JOB_CONDITIONS = frozenset({"Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"})
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
"""The annotation (and label) the Job controller puts on each pod of an Indexed Job."""


def fmt_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def controller_uid(obj: dict[str, Any]) -> str | None:
    """The uid of the object's controller (its controlling owner reference), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            uid: str | None = ref.get("uid")
            return uid
    return None


def _summary_metadata(obj: dict[str, Any], *extra: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    kept = {k: meta.get(k) for k in ("name", "namespace", "uid", "creationTimestamp", *extra)}
    return {**kept, "controllerUid": controller_uid(obj)}


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """The part of a Job the operator keeps in memory."""
    spec = job.get("spec") or {}
    return {
        "metadata": _summary_metadata(job),
        "spec": {
            "suspend": spec.get("suspend"),
            "ttlSecondsAfterFinished": spec.get("ttlSecondsAfterFinished"),
            "activeDeadlineSeconds": spec.get("activeDeadlineSeconds"),
        },
        "status": {k: v for k, v in (job.get("status") or {}).items() if k in JOB_STATUS_FIELDS},
    }


def pod_summary(pod: dict[str, Any]) -> dict[str, Any]:
    """The part of a Pod the operator keeps in memory (with an Indexed Job's completion index:
    the pod's node in a run over several nodes)."""
    meta = pod.get("metadata") or {}
    index = (meta.get("annotations") or {}).get(COMPLETION_INDEX)
    return {
        "metadata": {**_summary_metadata(pod, "deletionTimestamp"), **({"completionIndex": index} if index else {})},
        "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")},
        "status": {k: v for k, v in (pod.get("status") or {}).items() if k in POD_STATUS_FIELDS},
    }


def true_conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return {c.get("type"): c for c in conds if c.get("status") == "True"}


def job_finished(job: dict[str, Any] | None) -> bool:
    return bool(FINISHED_JOB_CONDITIONS & set(true_conditions(job)))


def pod_condition(pod: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == ctype), None)


def node_name(pod: dict[str, Any] | None) -> str | None:
    name: str | None = ((pod or {}).get("spec") or {}).get("nodeName")
    return name


def trainer_container_status(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    statuses: list[dict[str, Any]] = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == CONTAINER_NAME:
            return cs
    return statuses[0] if statuses else None


def waiting_state(pod: dict[str, Any] | None) -> dict[str, Any]:
    """The trainer container's waiting state ({} when it is not waiting)."""
    state: dict[str, Any] = ((trainer_container_status(pod) or {}).get("state") or {}).get("waiting") or {}
    return state


def terminated_state(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    cs = trainer_container_status(pod)
    if not cs:
        return None
    state: dict[str, Any] | None = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get(
        "terminated"
    )
    return state


def parse_summary(message: str | None) -> TrainerSummary | None:
    """The trainer's TrainerSummary from a termination message, or None (e.g. a log tail)."""
    if not message:
        return None
    try:
        return TrainerSummary.model_validate(json.loads(message))
    except (ValueError, pydantic.ValidationError, TypeError):
        return None


def trainer_summary(pod: dict[str, Any] | None) -> TrainerSummary | None:
    """The trainer's TrainerSummary from its pod's terminated state, if it wrote one."""
    return parse_summary((terminated_state(pod) or {}).get("message"))


def latest_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently created pod of the Job (retries create new ones)."""
    if not pods:
        return None
    return max(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"].get("name", "")))
