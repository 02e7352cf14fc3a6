"""Lease-based leader election (coordination.k8s.io/v1), wrapping kopf's run.

Same algorithm as client-go's leaderelection: a candidate takes the Lease when it is free or
when its record has not changed for ``leaseDurationSeconds`` *as observed on the candidate's own
monotonic clock* (no cross-node clock comparison); the holder renews every ``renew`` seconds
and steps down (stops kopf and exits non-zero, so that its pod restarts as a candidate) when it
could not renew within ``renew_deadline`` (< lease duration). Updates use the Lease's
resourceVersion (optimistic concurrency), so two candidates can never both win one round.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .kube import ApiError, KubeClient, collection_path

logger = logging.getLogger("finetune_operator.leader")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_interval: float = 5.0,
        retry_interval: float = 2.0,
    ):
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_interval = renew_interval
        self.renew_deadline = max(renew_interval * 1.5, lease_duration * 2 / 3)
        self.retry_interval = retry_interval
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.is_leader = False
        self.last_renew = 0.0

    @property
    def path(self) -> str:
        return f"{collection_path('coordination.k8s.io/v1', 'Lease', self.namespace)}/{self.name}"

    def _lease(self, resource_version: str | None, transitions: int, acquire_time: str) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/name": "finetune-operator"},
        }
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(round(self.lease_duration)),
                "acquireTime": acquire_time,
                "renewTime": _now(),
                "leaseTransitions": transitions,
            },
        }

    async def try_acquire_or_renew(self) -> bool:
        """One round. True when this candidate holds the Lease afterwards."""
        try:
            lease = await self.client.get(self.path)
        except ApiError as e:
            if e.status != 404:
                raise
            try:
                await self.client.create(
                    collection_path("coordination.k8s.io/v1", "Lease", self.namespace), self._lease(None, 0, _now())
                )
            except ApiError as e2:
                if e2.status == 409:
                    return False
                raise
            self._mark(True)
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        expired = not holder or now - self._observed_at > duration
        if holder != self.identity and not expired:
            self._mark(False)
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        acquire_time = spec.get("acquireTime") or _now()
        if holder != self.identity:
            transitions += 1
            acquire_time = _now()
        body = self._lease(lease["metadata"]["resourceVersion"], transitions, acquire_time)
        try:
            await self.client.request("PUT", self.path, body)
        except ApiError as e:
            if e.status == 409:  # somebody else updated it first
                return False
            raise
        self._mark(True)
        return True

    def _mark(self, leader: bool) -> None:
        if leader:
            self.last_renew = time.monotonic()
            if not self.is_leader:
                logger.info("became the leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
        self.is_leader = leader

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Block until this candidate is the leader (True) or ``stop`` is set (False)."""
        logger.info("waiting to become the leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
        while not stop.is_set():
            try:
                if await self.try_acquire_or_renew():
                    return True
            except Exception as e:  # noqa: BLE001
                logger.warning("leader election: %s", e)
            try:
                await asyncio.wait_for(stop.wait(), self.retry_interval)
            except TimeoutError:
                pass
        return False

    async def keep(self, on_lost: Callable[[], Awaitable[None] | None]) -> None:
        """Renew until the Lease is lost or cannot be renewed within the deadline; then call on_lost."""
        while True:
            await asyncio.sleep(self.renew_interval)
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(), self.renew_deadline)
            except Exception as e:  # noqa: BLE001
                logger.warning("could not renew the lease: %s", str(e) or type(e).__name__)  # a timeout has no text
                ok = None
            if ok is False or time.monotonic() - self.last_renew > self.renew_deadline:
                self.is_leader = False
                logger.error("lost the leader lease %s/%s; stepping down", self.namespace, self.name)
                result = on_lost()
                if asyncio.iscoroutine(result):
                    await result
                return

    async def release(self) -> None:
        """On a clean shutdown: hand the Lease over at once (empty holder)."""
        if not self.is_leader:
            return
        try:
            lease = await self.client.get(self.path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.client.request("PUT", self.path, lease)
        except Exception as e:  # noqa: BLE001
            logger.warning("could not release the lease: %s", e)
        self.is_leader = False
