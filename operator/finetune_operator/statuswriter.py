"""Writing a FineTuneJob's status: a JSON merge patch of what changed, at most once per
``status_min_interval_seconds`` per object (final transitions are never delayed), at most 16 in
flight, with the Event that goes with a phase change."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from . import metrics
from .config import OperatorConfig
from .events import post_event
from .kube import ApiError, KubeClient, object_path
from .runstatus import Result, merge_patch, owned_part
from .views import Key

logger = logging.getLogger("finetune_operator")
BUSY_STATUS_DELAY = 1.0  # while children are being created, non-final status writes wait


class Deferred(Exception):
    """The write must wait ``delay`` seconds (rate limit, or creations first)."""

    def __init__(self, delay: float):
        super().__init__(f"status write deferred by {delay:.2f}s")
        self.delay = delay


class StatusWriter:
    def __init__(self, cfg: OperatorConfig, client: KubeClient):
        self.cfg = cfg
        self.client = client
        self.last_written: dict[Key, dict[str, Any]] = {}
        self.last_write_at: dict[Key, float] = {}
        self.unseen_writes: set[Key] = set()  # written here, not yet delivered back by the watch
        self._slots = asyncio.Semaphore(16)

    def forget(self, key: Key) -> None:
        self.last_written.pop(key, None)
        self.last_write_at.pop(key, None)
        self.unseen_writes.discard(key)

    def recorded(self, key: Key, ftj: dict[str, Any]) -> dict[str, Any]:
        """The operator-owned status as last written (this process) or as stored."""
        return self.last_written.get(key) or owned_part(ftj.get("status"))

    def baseline(self, key: Key, stored: dict[str, Any]) -> dict[str, Any]:
        """The status to diff against: what this process wrote last, until the watch shows it;
        after that what is stored, so a change someone else made is seen (and corrected)."""
        written, owned = self.last_written.get(key), owned_part(stored)
        if written is None or owned == written:
            self.unseen_writes.discard(key)
            return owned
        return written if key in self.unseen_writes else owned

    async def write(
        self, key: Key, ftj: dict[str, Any], baseline: dict[str, Any], result: Result, creating: bool
    ) -> bool:
        """Patch the status if it changed. Raises Deferred when it must wait; False when the object is gone."""
        patch = merge_patch(baseline, result.status)
        if not patch:
            return True
        wait = self.cfg.status_min_interval_seconds - (time.monotonic() - self.last_write_at.get(key, -1e9))
        if creating and not result.transitioned_to_final:
            wait = max(wait, BUSY_STATUS_DELAY)  # a burst of new runs: create first, report after
        if wait > 0 and not result.transitioned_to_final:
            raise Deferred(wait)
        async with self._slots:
            try:
                await self.client.merge_patch(object_path(ftj) + "/status", {"status": patch})
            except ApiError as e:
                if e.status == 404:
                    return False
                raise
        metrics.STATUS_WRITES.inc()
        self.last_written[key] = result.status
        self.last_write_at[key] = time.monotonic()
        self.unseen_writes.add(key)
        self._announce(ftj, baseline, result)
        return True

    @staticmethod
    def _announce(ftj: dict[str, Any], baseline: dict[str, Any], result: Result) -> None:
        """The Event (one per phase, plus every warning), the log line and the final-run metrics."""
        meta = ftj["metadata"]
        if result.event:
            etype, reason, message = result.event
            if etype == "Warning" or baseline.get("phase") != result.status["phase"]:
                post_event(ftj, etype, reason, message)
            logger.info(
                "%s/%s: %s",
                meta["namespace"],
                meta["name"],
                message,
                extra={
                    "finetunejob": f"{meta['namespace']}/{meta['name']}",
                    "phase": result.status["phase"],
                    "reason": reason,
                },
            )
        if result.transitioned_to_final:
            metrics.observe_final(
                result.status["phase"], result.status.get("durationSeconds"), result.status.get("gpuSeconds")
            )
