"""``output.retention: Delete``: when the FineTuneJob is deleted, stop this run's Job, then remove
the files this run wrote with a short Job running ``finetune-train cleanup``, which keeps anything
that is not this run's. Its one-line result becomes the OutputDeleted or OutputKept Event."""

from __future__ import annotations

import json
from typing import Any

import kopf

from finetune_api import runconfig

from . import builders
from .children import ChildCreator, NameConflict, Refused
from .events import post_event
from .kube import ApiError, KubeClient, collection_path, object_path
from .messages import one_line
from .summaries import terminated_state, true_conditions
from .views import Key, Views

CLEANUP_RETRY_SECONDS = 5
CLEANUP_TRIES = 60
POD_END_POLL_SECONDS = 2


class OutputCleanup:
    def __init__(self, client: KubeClient, views: Views, children: ChildCreator):
        self.client = client
        self.views = views
        self.children = children

    async def run(self, ftj: dict[str, Any], retry: int) -> None:
        try:
            spec = builders.parse_spec(ftj)
        except builders.InvalidSpec:
            return
        meta = ftj["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        job = self.views.job(key, meta["uid"])
        if job is not None:
            await self._delete_job(job)
        if self.views.pods.get(key):
            # the trainer writes progress until it ends: remove its files only after its pod is gone
            raise kopf.TemporaryError("waiting for the trainer pod to end", delay=POD_END_POLL_SECONDS)
        where = runconfig.output_dir(spec, meta["namespace"], meta["name"])
        try:
            cleanup = await self.children.create_owned(ftj, builders.cleanup_job(ftj, spec, self.children.cfg))
        except (NameConflict, Refused) as e:
            post_event(ftj, "Warning", "OutputCleanupFailed", f"could not start the cleanup of {where}: {e}")
            return
        conds = true_conditions(cleanup)
        if "Complete" in conds:
            outcome, message = await self._result(cleanup)
            removed = outcome == "removed"
            post_event(ftj, "Normal" if removed else "Warning", "OutputDeleted" if removed else "OutputKept", message)
            return
        if "Failed" in conds or retry >= CLEANUP_TRIES:
            post_event(ftj, "Warning", "OutputCleanupFailed", f"could not remove {where}; remove it by hand")
            return
        raise kopf.TemporaryError("waiting for the output cleanup Job", delay=CLEANUP_RETRY_SECONDS)

    async def _delete_job(self, job: dict[str, Any]) -> None:
        try:
            await self.client.delete(
                object_path({"apiVersion": "batch/v1", "kind": "Job", "metadata": job["metadata"]}),
                {"propagationPolicy": "Background", "preconditions": {"uid": job["metadata"]["uid"]}},
            )
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    async def _result(self, cleanup_job: dict[str, Any]) -> tuple[str, str]:
        """(outcome, message) from the cleanup pod's termination message (a JSON line)."""
        meta = cleanup_job["metadata"]
        pods = await self.client.get(
            collection_path("v1", "Pod", meta["namespace"]),
            params={"labelSelector": f"batch.kubernetes.io/controller-uid={meta['uid']}"},
        )
        for pod in (pods or {}).get("items") or []:
            term = terminated_state(pod) or {}
            try:
                record = json.loads(term.get("message") or "")
                return str(record["outcome"]), one_line(str(record["message"]))
            except (ValueError, KeyError, TypeError):
                continue
        return "unknown", f"the cleanup Job {meta['name']} completed without reporting what it removed"
