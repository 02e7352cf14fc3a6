"""The FineTuneJob's status, computed (pure): (FineTuneJob, its Job, its Pod, now) -> the status
the operator owns, built as a ``FineTuneJobStatus``, plus what to do next (a requeue delay, an
Event, suspending a Job whose run failed for good).

A final phase (Succeeded/Failed) is sticky (the spec is immutable), unless the run's Job is still
active: a final status that the Job contradicts was written by someone else and is recomputed.
The operator owns every status field but those the trainer writes
(``FineTuneJobStatus.TRAINER_FIELDS``); its merge patches never touch those.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from finetune_api import runconfig
from finetune_api.protocol import FailureReason, TrainerSummary
from finetune_api.resource import ArtifactsStatus, FineTuneJobSpec, FineTuneJobStatus, Phase
from finetune_api.runconfig import FetchPlan

from . import builders
from .conditions import conditions
from .messages import shorten
from .refusals import ChildrenBlocked
from .summaries import (
    fmt_time,
    job_finished,
    parse_time,
    terminated_state,
    trainer_container_status,
    trainer_summary,
    true_conditions,
)
from .topology import topology
from .verdicts import Observed, Verdict, decide
from .verdicts.fetching import fetched_sources

OWNED_FIELDS = FineTuneJobStatus.operator_fields()
FINAL_PHASES = frozenset(p.value for p in Phase if p.is_final)
JOB_SUSPENDING_REASONS = frozenset(
    {FailureReason.IMAGE_PULL_FAILED, FailureReason.SECRET_NOT_FOUND, FailureReason.INSUFFICIENT_GPU_MEMORY}
)
"""Failures decided while the Job is still active: the verdict suspends the Job (suspend_job)."""


@dataclasses.dataclass(frozen=True)
class FetchSeen:
    """The run's downloads and its fetch Job and pod, as the reconciler saw them."""

    plans: tuple[FetchPlan, ...]
    job: dict[str, Any] | None = None
    pod: dict[str, Any] | None = None
    cache_claim: str | None = None
    """The model cache claim (for status.sources' locations)."""


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


def is_final(phase: str | None) -> bool:
    """``Phase.is_final`` for a phase as stored (a string, or None before the first status)."""
    return phase in FINAL_PHASES


def owned_part(status: dict[str, Any] | None) -> dict[str, Any]:
    """The operator-owned fields of a stored status (to compare with ``compute``'s output)."""
    return {k: v for k, v in (status or {}).items() if k in OWNED_FIELDS}


def merge_patch(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch turning the owned part of ``old`` into ``new`` (None when equal). Fields
    the operator does not own are never touched; maps it owns are sent whole."""
    old_owned = owned_part(old)
    if old_owned == new:
        return None
    patch: dict[str, Any] = {k: v for k, v in new.items() if old_owned.get(k) != v}
    for k in old_owned:
        if k not in new:
            patch[k] = None
    return patch


def compute(
    ftj: dict[str, Any],
    job: dict[str, Any] | None,
    pod: dict[str, Any] | None,
    *,
    now: dt.datetime | None = None,
    job_expected: bool = False,
    image_pull_grace_seconds: float = 300.0,
    blocked: ChildrenBlocked | None = None,
    mount_problem: str | None = None,
    patch_refused: str | None = None,
    fetch: FetchSeen | None = None,
    node_gpu_memory_bytes: int | None = None,
    pods: tuple[dict[str, Any], ...] = (),
) -> Result:
    """The FineTuneJob's operator-owned status, given its Job (only this run's: the caller checks
    the owner uid), the Job's Pod that speaks for the run (its latest; on several nodes
    ``topology.speaking_pod``) and all its ``pods``, and why creating the children failed, if it did."""
    now = now or dt.datetime.now(dt.UTC)
    meta = ftj.get("metadata") or {}
    prev = ftj.get("status") or {}
    generation = meta.get("generation")
    if is_final(prev.get("phase")) and _final_is_trusted(prev, job):
        return Result(status=_kept(prev, generation))
    try:
        spec = builders.parse_spec(ftj)
    except builders.InvalidSpec as e:
        v = Verdict(Phase.FAILED, FailureReason.INVALID_SPEC, shorten(str(e)))
        status = FineTuneJobStatus(
            phase=v.phase,
            reason=v.reason,
            message=v.message,
            observed_generation=generation,
            conditions=conditions(v, prev.get("conditions") or [], None, generation, fmt_time(now)),
            completion_time=fmt_time(now),
        )
        return _result(status, prev, v)
    seen = Observed(
        job=job,
        pod=pod,
        now=now,
        job_expected=job_expected,
        blocked=blocked,
        mount_problem=mount_problem,
        patch_refused=patch_refused,
        node_gpu_memory_bytes=node_gpu_memory_bytes,
        image_pull_grace_seconds=image_pull_grace_seconds,
        fetch_plans=fetch.plans if fetch else (),
        fetch_job=fetch.job if fetch else None,
        fetch_pod=fetch.pod if fetch else None,
        pods=pods,
    )
    v = decide(ftj, spec, seen)
    status = _status(v, ftj, spec, job, pod, now)
    status.topology = topology(spec, list(pods), prev.get("plan"))
    if fetch is not None and fetch.plans:
        claims = (fetch.cache_claim, spec.output.pvc)
        status.sources = fetched_sources(list(fetch.plans), fetch.pod, prev.get("sources") or [], claims)
    return _result(status, prev, v)


def _status(
    v: Verdict,
    ftj: dict[str, Any],
    spec: FineTuneJobSpec,
    job: dict[str, Any] | None,
    pod: dict[str, Any] | None,
    now: dt.datetime,
) -> FineTuneJobStatus:
    meta = ftj.get("metadata") or {}
    prev = ftj.get("status") or {}
    generation = meta.get("generation")
    final = v.phase.is_final
    start, end = _times(job, pod, prev, final, now)
    status = FineTuneJobStatus(
        phase=v.phase,
        reason=str(v.reason),
        message=v.message,
        observed_generation=generation,
        conditions=conditions(v, prev.get("conditions") or [], pod, generation, fmt_time(now)),
        job_name=(job or {}).get("metadata", {}).get("name") or prev.get("jobName"),
        pod_name=(pod or {}).get("metadata", {}).get("name") or prev.get("podName"),
        start_time=start,
    )
    if final:
        status.completion_time = end
        started, ended = parse_time(start), parse_time(end)
        if started and ended:
            status.duration_seconds = max(0.0, (ended - started).total_seconds())
            status.gpu_seconds = status.duration_seconds * spec.resources.gpus * spec.resources.nodes
    summary = trainer_summary(pod)
    if summary is not None and summary.metrics and (summary.outcome == "failed" or v.phase is Phase.SUCCEEDED):
        status.metrics = dict(summary.metrics)
    if v.phase is Phase.SUCCEEDED:
        status.artifacts = _artifacts(spec, meta, summary)
    return status


def _artifacts(spec: FineTuneJobSpec, meta: dict[str, Any], summary: TrainerSummary | None) -> ArtifactsStatus:
    artifacts = ArtifactsStatus(
        pvc=spec.output.pvc, path=runconfig.output_subpath(spec, meta.get("namespace", ""), meta.get("name", ""))
    )
    if summary is not None and summary.artifacts is not None:
        mount = runconfig.pvc_mount_path(spec.output.pvc) + "/"
        if summary.artifacts.path.startswith(mount):
            artifacts.path = summary.artifacts.path[len(mount) :]
        artifacts.size_bytes = summary.artifacts.size_bytes
        artifacts.sha256 = summary.artifacts.sha256 or None
    return artifacts


def _times(
    job: dict[str, Any] | None, pod: dict[str, Any] | None, prev: dict[str, Any], final: bool, now: dt.datetime
) -> tuple[str | None, str | None]:
    state = (trainer_container_status(pod) or {}).get("state") or {}
    term = terminated_state(pod)
    start = (
        (state.get("running") or {}).get("startedAt")
        or (term or {}).get("startedAt")
        or prev.get("startTime")
        or ((job or {}).get("status") or {}).get("startTime")
    )
    if not final:
        return start, None
    job_status = (job or {}).get("status") or {}
    failure = true_conditions(job).get("Failed") or true_conditions(job).get("FailureTarget") or {}
    end = (
        (term or {}).get("finishedAt")
        or job_status.get("completionTime")
        or failure.get("lastTransitionTime")
        or fmt_time(now)
    )
    return start, end


def _final_is_trusted(prev: dict[str, Any], job: dict[str, Any] | None) -> bool:
    """A recorded final phase stands unless the run's Job is still active: then it was not the
    operator's verdict (a run failed before its trainer could start has its Job suspended, not finished)."""
    if job is None or job_finished(job):
        return True
    return prev.get("reason") in JOB_SUSPENDING_REASONS and bool((job.get("spec") or {}).get("suspend"))


def _kept(prev: dict[str, Any], generation: int | None) -> dict[str, Any]:
    """A final status as stored, with the current generation observed."""
    kept = owned_part(prev)
    kept["observedGeneration"] = generation
    kept["conditions"] = [
        {**c, "observedGeneration": generation} if generation is not None else c for c in prev.get("conditions") or []
    ]
    return _wire_clean(kept)


def _wire_clean(status: dict[str, Any]) -> dict[str, Any]:
    """Absent means empty: no None, {} or [] values."""
    return {k: v for k, v in status.items() if v is not None and v != {} and v != []}


def _result(status: FineTuneJobStatus, prev: dict[str, Any], v: Verdict) -> Result:
    wire = _wire_clean(status.to_wire())
    event = None
    if (prev.get("phase"), prev.get("reason")) != (wire["phase"], wire["reason"]):
        warning = v.phase is Phase.FAILED or v.stalled
        event = ("Warning" if warning else "Normal", wire["reason"], f"{wire['phase']}: {wire['message']}")
    return Result(
        status=wire,
        requeue_after=v.requeue_after,
        event=event,
        suspend_job=v.suspend_job,
        transitioned_to_final=v.phase.is_final and not is_final(prev.get("phase")),
    )
