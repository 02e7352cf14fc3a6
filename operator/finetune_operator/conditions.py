"""The FineTuneJob's conditions from a verdict (kstatus: Ready, Reconciling, Stalled; plus the
phase conditions and Scheduled). ``lastTransitionTime`` is kept while a condition's status holds."""

from __future__ import annotations

from typing import Any, Literal

from finetune_api.protocol import FailureReason
from finetune_api.resource import Condition, ConditionType, Phase

from .summaries import node_name, pod_condition
from .verdicts import Verdict


def _condition(
    prev: dict[str | None, dict[str, Any]],
    ctype: str,
    true: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> Condition:
    status: Literal["True", "False"] = "True" if true else "False"
    old = prev.get(ctype)
    ltt = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") else now
    return Condition(
        type=ctype,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=ltt,
        observed_generation=generation,
    )


def _scheduled(
    prev: dict[str | None, dict[str, Any]], v: Verdict, pod: dict[str, Any] | None, generation: int | None, now: str
) -> Condition:
    scheduled = pod_condition(pod, "PodScheduled") if pod else None
    if pod and scheduled is not None:
        ok = scheduled.get("status") == "True"
        node = node_name(pod)
        return _condition(
            prev,
            ConditionType.SCHEDULED,
            ok,
            "Scheduled" if ok else (scheduled.get("reason") or "Pending"),
            f"on node {node}" if ok and node else (v.message if v.reason == FailureReason.UNSCHEDULABLE else ""),
            generation,
            now,
        )
    if ConditionType.SCHEDULED in prev:
        kept = Condition.model_validate(prev[ConditionType.SCHEDULED])
        return kept.model_copy(update={"observed_generation": generation}) if generation is not None else kept
    return _condition(prev, ConditionType.SCHEDULED, False, "WaitingForPod", "", generation, now)


def conditions(
    v: Verdict, prev_conditions: list[dict[str, Any]], pod: dict[str, Any] | None, generation: int | None, now: str
) -> list[Condition]:
    prev: dict[str | None, dict[str, Any]] = {c.get("type"): c for c in prev_conditions or []}
    reason, message = str(v.reason), v.message
    succeeded = v.phase is Phase.SUCCEEDED
    failed = v.phase is Phase.FAILED
    suspended = v.phase is Phase.SUSPENDED
    stalled = failed or v.stalled
    reconciling = v.phase in (Phase.PENDING, Phase.RUNNING) and not stalled

    def cond(ctype: str, true: bool, text: str) -> Condition:
        return _condition(prev, ctype, true, reason, text, generation, now)

    return [
        cond(ConditionType.READY, succeeded, message),
        cond(ConditionType.RECONCILING, reconciling, message if reconciling else ""),
        cond(ConditionType.STALLED, stalled, message if stalled else ""),
        cond(ConditionType.SUCCEEDED, succeeded, message if succeeded else ""),
        cond(ConditionType.FAILED, failed, message if failed else ""),
        cond(ConditionType.SUSPENDED, suspended, message if suspended else ""),
        _scheduled(prev, v, pod, generation, now),
    ]
