"""The run's Job after creation: found again when its labels were removed, its finished pod
looked up, ``spec.suspend`` kept following the FineTuneJob's, ``ttlSecondsAfterFinished`` set
only once the final status (with the trainer's result) is recorded. Patches carry the Job's uid,
so they can never land on another object."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from . import builders
from .kube import ApiError, KubeClient, collection_path, object_path
from .messages import one_line
from .summaries import controller_uid, job_finished, job_summary, latest_pod, pod_summary
from .views import Key

logger = logging.getLogger("finetune_operator")


class JobControl:
    def __init__(self, client: KubeClient):
        self.client = client
        self.refused: dict[Key, str] = {}
        """Why the API server refused the last change to a run's Job (the status says so)."""

    def forget(self, key: Key) -> None:
        self.refused.pop(key, None)

    async def find_job(self, ftj: dict[str, Any]) -> dict[str, Any] | None:
        """This run's Job read from the API server (it is missing from the view only when its labels
        were removed, or it is gone); its labels are put back so that the watch follows it again."""
        meta = ftj["metadata"]
        probe: dict[str, Any] = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": builders.job_name(meta["name"]), "namespace": meta["namespace"]},
        }
        try:
            job = await self.client.get(object_path(probe))
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        if controller_uid(job) != meta["uid"]:
            return None
        await self.client.merge_patch(
            object_path(probe),
            {"metadata": {"uid": job["metadata"]["uid"], "labels": builders.standard_labels(meta["name"])}},
        )
        logger.warning(
            "%s/%s: the labels of Job %s had been removed; put back",
            meta["namespace"],
            meta["name"],
            probe["metadata"]["name"],
            extra={"finetunejob": f"{meta['namespace']}/{meta['name']}"},
        )
        return job_summary(job)

    async def find_pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The finished Job's pods, by the Job controller's own label (ours may have been removed)."""
        meta = job["metadata"]
        found = await self.client.get(
            collection_path("v1", "Pod", meta["namespace"]),
            params={"labelSelector": f"batch.kubernetes.io/controller-uid={meta['uid']}"},
        )
        pods = [pod_summary(p) for p in (found or {}).get("items") or []]
        return [p for p in pods if p["metadata"]["controllerUid"] == meta["uid"]]

    async def find_pod(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """The finished Job's latest pod (a fetch Job's: one pod)."""
        return latest_pod(await self.find_pods(job))

    async def converge(
        self,
        key: Key,
        ftj: dict[str, Any],
        job: dict[str, Any],
        final: bool,
        suspend_failed: bool,
        before_resume: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> bool:
        """spec.suspend of a running Job follows the FineTuneJob (Kueue unsuspends queued Jobs); once
        the outcome is recorded, ttlSecondsAfterFinished follows the FineTuneJob's. True when the API
        server newly refused the change (the status must say so)."""
        spec = ftj.get("spec") or {}
        have = job.get("spec") or {}
        changes: dict[str, Any] = {}
        if final:
            if suspend_failed and not have.get("suspend"):
                changes["suspend"] = True
            want_ttl = spec.get("ttlSecondsAfterFinished")
            if job_finished(job) and have.get("ttlSecondsAfterFinished") != want_ttl:
                changes["ttlSecondsAfterFinished"] = want_ttl
        else:
            want = bool(spec.get("suspend"))
            queued = bool((spec.get("scheduling") or {}).get("queueName"))
            if want != bool(have.get("suspend")) and not (queued and not want):
                changes["suspend"] = want
        if not changes:
            self.refused.pop(key, None)
            return False
        if changes.get("suspend") is False:
            await before_resume(ftj)  # a suspended run may have lost its prerequisites meanwhile
        return await self._patch(key, job, changes)

    async def _patch(self, key: Key, job: dict[str, Any], spec_changes: dict[str, Any]) -> bool:
        """Merge-patch this run's Job (the uid in the patch makes it fail on any other object)."""
        meta = job["metadata"]
        path = f"{collection_path('batch/v1', 'Job', meta['namespace'])}/{meta['name']}"
        try:
            await self.client.merge_patch(path, {"metadata": {"uid": meta["uid"]}, "spec": spec_changes})
        except ApiError as e:
            if e.status == 403:  # RBAC or an admission policy: the namespace is no longer opted in
                newly = key not in self.refused
                self.refused[key] = one_line(e.message or "forbidden")
                return newly
            if e.status not in (404, 409, 422):  # gone, or no longer this run's Job
                raise
        self.refused.pop(key, None)
        return False
