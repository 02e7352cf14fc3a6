"""Why a scheduled trainer pod does not start when its status cannot say: a volume that fails to
mount shows only as Events on the pod (FailedMount), which the operator reads for such pods."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from .kube import KubeClient, collection_path
from .messages import one_line
from .summaries import parse_time, pod_condition, waiting_state
from .views import Key

MOUNT_GRACE_SECONDS = 20.0
"""How long a bound pod may take to create its container before its events are read."""
LOOKUP_EVERY_SECONDS = 15.0
CREATING_REASONS = frozenset({"", "ContainerCreating", "PodInitializing"})


def _creating_for(pod: dict[str, Any] | None, now: dt.datetime) -> float | None:
    """Seconds since a bound pod that is still creating its container was bound, else None."""
    if pod is None or ((pod.get("status") or {}).get("phase") or "Pending") != "Pending":
        return None
    scheduled = pod_condition(pod, "PodScheduled") or {}
    since = parse_time(scheduled.get("lastTransitionTime"))
    if scheduled.get("status") != "True" or since is None:
        return None
    if (waiting_state(pod).get("reason") or "") not in CREATING_REASONS:
        return None
    return (now - since).total_seconds()


def stuck_creating(pod: dict[str, Any] | None, now: dt.datetime) -> bool:
    """Bound for MOUNT_GRACE_SECONDS and still creating its container."""
    seconds = _creating_for(pod, now)
    return seconds is not None and seconds >= MOUNT_GRACE_SECONDS


def look_again_in(pod: dict[str, Any] | None, now: dt.datetime) -> float | None:
    """When to read a creating pod's events again: at the end of its grace, then every
    LOOKUP_EVERY_SECONDS. No pod event may come in between (a failing mount changes nothing in
    the pod's status), so the reconciler schedules it. None for a pod that is not creating."""
    seconds = _creating_for(pod, now)
    if seconds is None:
        return None
    return MOUNT_GRACE_SECONDS - seconds + 0.5 if seconds < MOUNT_GRACE_SECONDS else LOOKUP_EVERY_SECONDS


class PodEvents:
    def __init__(self, client: KubeClient):
        self.client = client
        self._seen: dict[Key, tuple[str, float, str | None]] = {}  # (pod uid, when looked, problem)

    def forget(self, key: Key) -> None:
        self._seen.pop(key, None)

    async def mount_problem(self, key: Key, pod: dict[str, Any] | None) -> str | None:
        """The latest FailedMount message of a pod stuck creating its container (read at most
        every LOOKUP_EVERY_SECONDS), else None."""
        if pod is None or not stuck_creating(pod, dt.datetime.now(dt.UTC)):
            self._seen.pop(key, None)
            return None
        uid = pod["metadata"]["uid"]
        cached = self._seen.get(key)
        if cached and cached[0] == uid and time.monotonic() - cached[1] < LOOKUP_EVERY_SECONDS:
            return cached[2]
        found = await self.client.get(
            collection_path("v1", "Event", pod["metadata"]["namespace"]),
            params={"fieldSelector": f"involvedObject.uid={uid},reason=FailedMount"},
        )
        events = (found or {}).get("items") or []
        latest = max(events, key=_when, default=None)
        problem = one_line(latest.get("message") or "") if latest else None
        self._seen[key] = (uid, time.monotonic(), problem)
        return problem


def _when(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or "")
