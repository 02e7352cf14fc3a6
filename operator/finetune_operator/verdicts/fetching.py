"""Before the trainer Job: the run's fetch Job downloading its models and datasets.

None once every download succeeded (the trainer Job comes next). Until then the run is Pending
with reason Fetching; a container that cannot start (a missing Secret, after SECRET_GRACE_SECONDS)
or a fetch that exits with one of the download exit codes fails the run with that reason and the
fetch's one-line message, naming the spec field, before any GPU time.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from typing import Any

import pydantic

from finetune_api.protocol import EXIT_CODE_REASONS, FailureReason, FetchRecord
from finetune_api.resource import Phase, SourceStatus
from finetune_api.runconfig import MODEL_CACHE_MOUNT, FetchPlan, pvc_mount_path

from ..messages import one_line, shorten
from ..reasons import CONFIG_ERROR_REASONS, IMAGE_PULL_REASONS, Reason
from ..summaries import parse_summary, parse_time, pod_condition, true_conditions
from .base import Verdict
from .completion import awaiting_pod_result
from .pod import MISSING_SECRET, SECRET_GRACE_SECONDS

SECRET_FIELDS = {
    "model": ("spec.model.tokenSecretRef", "spec.model.credentialsSecretRef"),
    "dataset": ("spec.dataset.credentialsSecretRef",),
    "validation": ("spec.dataset.credentialsSecretRef",),
}


def container_states(pod: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Container name -> its state (the last terminated one where it restarted)."""
    out: dict[str, dict[str, Any]] = {}
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        state = dict(cs.get("state") or {})
        if not state.get("terminated") and (cs.get("lastState") or {}).get("terminated"):
            state["terminated"] = cs["lastState"]["terminated"]
        out[cs.get("name", "")] = state
    return out


def fetching(
    plans: list[FetchPlan], job: dict[str, Any] | None, pod: dict[str, Any] | None, now: dt.datetime
) -> Verdict | None:
    """The run's verdict while it downloads (a Verdict), or None when every download is done."""
    what = ", ".join(f"{p.kind} {p.source}" for p in plans)
    if job is None:
        return Verdict(Phase.PENDING, Reason.FETCHING, f"creating the download Job for {what}")
    conds = true_conditions(job)
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return None
    states = container_states(pod)
    failed = _failed_download(plans, states)
    if failed is not None:
        return failed
    if "Failed" in conds or "FailureTarget" in conds:
        failure = conds.get("Failed") or conds.get("FailureTarget") or {}
        waiting = awaiting_pod_result(failure.get("lastTransitionTime"), now, "the download Job failed; reading why")
        return waiting or Verdict(
            Phase.FAILED,
            FailureReason.DOWNLOAD_FAILED,
            shorten(f"the download Job {job['metadata']['name']} failed ({failure.get('reason') or 'no pod result'})"),
        )
    return _in_progress(plans, pod, states, what, now)


def _failed_download(plans: list[FetchPlan], states: dict[str, dict[str, Any]]) -> Verdict | None:
    for plan in plans:
        term = states.get(plan.container, {}).get("terminated")
        if not term or term.get("exitCode") == 0:
            continue
        code = term.get("exitCode")
        summary = parse_summary(term.get("message"))
        detail = one_line((summary.message or "") if summary else (term.get("message") or ""))
        reason = EXIT_CODE_REASONS.get(code, FailureReason.DOWNLOAD_FAILED)
        if term.get("reason") == "OOMKilled":
            detail = "the download was killed for exceeding its memory limit"
        return Verdict(
            Phase.FAILED, reason, shorten(f"{plan.field} {plan.source}: {detail or f'fetch exited with code {code}'}")
        )
    return None


def _in_progress(
    plans: list[FetchPlan], pod: dict[str, Any] | None, states: dict[str, dict[str, Any]], what: str, now: dt.datetime
) -> Verdict:
    if pod is None:
        return Verdict(Phase.PENDING, Reason.FETCHING, f"waiting for the download pod ({what})")
    scheduled = pod_condition(pod, "PodScheduled") or {}
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return Verdict(
            Phase.PENDING,
            FailureReason.UNSCHEDULABLE,
            shorten(f"the download pod cannot be scheduled: {scheduled.get('message') or 'no message'}"),
            stalled=True,
        )
    since = parse_time(scheduled.get("lastTransitionTime")) or parse_time(pod["metadata"].get("creationTimestamp"))
    elapsed = (now - (since or now)).total_seconds()
    for plan in plans:
        waiting = states.get(plan.container, {}).get("waiting") or {}
        message = waiting.get("message") or ""
        missing = MISSING_SECRET.search(message) if waiting.get("reason") in CONFIG_ERROR_REASONS else None
        if missing:
            fields = " or ".join(SECRET_FIELDS[plan.container])
            name = missing.group(1) or missing.group(3)
            what_missing = f"has no key {missing.group(2)}" if missing.group(2) else "does not exist in the namespace"
            text = shorten(f"{plan.field} {plan.source}: Secret {name} ({fields}) {what_missing}")
            if elapsed < SECRET_GRACE_SECONDS:
                return Verdict(
                    Phase.PENDING,
                    Reason.CONTAINER_CONFIG_ERROR,
                    text,
                    stalled=True,
                    requeue_after=max(1.0, SECRET_GRACE_SECONDS - elapsed),
                )
            return Verdict(Phase.FAILED, FailureReason.SECRET_NOT_FOUND, text)
        if waiting.get("reason") in IMAGE_PULL_REASONS | CONFIG_ERROR_REASONS:
            return Verdict(
                Phase.PENDING,
                Reason.CONTAINER_CONFIG_ERROR if waiting["reason"] in CONFIG_ERROR_REASONS else "ImagePullFailed",
                shorten(f"the download pod's {plan.container} container cannot start: {waiting['reason']}: {message}"),
                stalled=True,
            )
    node = (pod.get("spec") or {}).get("nodeName")
    return Verdict(Phase.PENDING, Reason.FETCHING, f"downloading {what}" + (f" on node {node}" if node else ""))


def fetched_sources(
    plans: list[FetchPlan],
    pod: dict[str, Any] | None,
    prev: list[dict[str, Any]],
    claims: tuple[str | None, str],
) -> list[SourceStatus]:
    """status.sources: each download's FetchRecord from its container's termination message, else as
    recorded before (the fetch Job is removed FETCH_TTL_SECONDS after it finished). ``claims``: the
    model cache claim (or None) and the output claim, for each entry's location."""
    states = container_states(pod)
    recorded = {s.get("field"): s for s in prev}
    out: list[SourceStatus] = []
    for plan in plans:
        record = _record((states.get(plan.container, {}).get("terminated") or {}).get("message"))
        if record is None:
            if plan.field in recorded:
                out.append(SourceStatus.model_validate(recorded[plan.field]))
            continue
        claim = claims[0] if plan.in_cache else claims[1]
        location = posixpath.relpath(plan.path, MODEL_CACHE_MOUNT if plan.in_cache else pvc_mount_path(claims[1]))
        out.append(
            SourceStatus(
                field=plan.field,
                uri=plan.source,
                revision=record.revision,
                commit=record.commit,
                sha256=record.sha256,
                size_bytes=record.size_bytes,
                file_count=record.file_count,
                verified_with=record.verified_with,
                cached=record.cached,
                bytes_downloaded=record.bytes_downloaded,
                seconds=record.seconds,
                location=f"{claim}:{location}",
            )
        )
    return out


def _record(message: str | None) -> FetchRecord | None:
    if not message:
        return None
    try:
        return FetchRecord.model_validate_json(message)
    except pydantic.ValidationError:
        return None
