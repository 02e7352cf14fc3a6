"""The reconciler: one FineTuneJob at a time, from the in-memory views to the API server.

``reconcile(key)`` is level-triggered (it works from the latest state, whatever event woke it):

1. Downloads (``fetches.SourceFetches``): a run with ``s3://``, ``https://`` or ``hf://`` sources
   gets its fetch Job first; the trainer Job waits until every download succeeded.
   Children (``children.ChildCreator``): created when this run's Job is neither in the view nor
   was created before (``status.jobName``).
2. The status (``runstatus.compute``, ``statuswriter.StatusWriter``): recomputed from the views
   (no GETs) and merge-patched only when it changed, rate-limited per object.
3. The Job (``jobcontrol.JobControl``): ``spec.suspend`` follows the FineTuneJob's;
   ``ttlSecondsAfterFinished`` is set only once the final status is recorded; lost prerequisites
   are re-created.

Each part owns its own per-key state; ``forget`` drops all of it. ``cleanup.OutputCleanup``
handles the deletion of a ``retention: Delete`` FineTuneJob.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from . import metrics
from .children import POD_EXPECTED_WITHIN, ChildCreator, CreateFailed
from .cleanup import OutputCleanup
from .config import OperatorConfig
from .fetches import SourceFetches
from .jobcontrol import JobControl
from .kube import KubeClient
from .podevents import PodEvents, look_again_in
from .runstatus import compute, is_final
from .statuswriter import Deferred, StatusWriter
from .summaries import job_finished, node_name
from .topology import speaking_pod
from .views import Key, Views
from .workqueue import WorkQueue

STATUS_DELAY = 0.3  # coalesce bursts of Job/Pod events into one status computation


class Reconciler:
    """The operator's state (shared by the handlers through ``memo.reconciler``)."""

    def __init__(self, cfg: OperatorConfig, client: KubeClient):
        self.cfg = cfg
        self.client = client
        self.views = Views()
        self.queue: WorkQueue[Key] = WorkQueue(self._process, self._count_failure)
        self.job_metrics = metrics.JobMetrics()
        self.children = ChildCreator(cfg, client, self.queue.failures)
        self.status = StatusWriter(cfg, client)
        self.jobs = JobControl(client)
        self.pod_events = PodEvents(client)
        self.node_gpus = self.children.node_gpus
        self.output = OutputCleanup(client, self.views, self.children)
        self.fetches = SourceFetches(cfg, client, self.views, self.children, self.jobs)

    def enqueue(self, key: Key, delay: float = 0.0) -> None:
        self.queue.enqueue(key, delay)

    def forget(self, key: Key) -> None:
        self.children.forget(key)
        self.fetches.forget(key)
        self.status.forget(key)
        self.jobs.forget(key)
        self.pod_events.forget(key)
        self.job_metrics.forget(key)
        self.queue.forget(key)

    def job_deleted(self, key: Key) -> None:
        """A Job deleted before the watch showed it is no longer "being created"."""
        self.children.expected_jobs.pop(key, None)

    async def _process(self, key: Key) -> None:
        started = time.monotonic()
        try:
            await self.reconcile(key)
        finally:
            metrics.RECONCILE_LATENCY.labels(step="status").observe(time.monotonic() - started)

    @staticmethod
    def _count_failure(key: Key, error: Exception) -> None:
        metrics.RECONCILE_ERRORS.labels(step="create" if isinstance(error, CreateFailed) else "status").inc()

    async def reconcile(self, key: Key) -> None:
        ftj = self.views.ftj(key)
        if ftj is None:
            self.forget(key)
            return
        if ftj["metadata"].get("deletionTimestamp"):
            return
        uid = ftj["metadata"]["uid"]
        job = self.views.job(key, uid)
        fetch = await self.fetches.observe(key, ftj)
        recorded = self.status.recorded(key, ftj)
        if job is not None:
            self.children.expected_jobs.pop(key, None)
        elif fetch is not None and not recorded.get("jobName") and not self.fetches.done(fetch):
            await self.fetches.ensure(key, ftj, recorded, fetch)
        elif await self.children.ensure_children(key, ftj, recorded):
            self.enqueue(key, STATUS_DELAY)  # report once the watch has delivered the new Job
            return
        expected = self.children.job_expected(key, uid)
        job, pods = await self._job_and_pods(key, ftj, job, expected)
        pod = speaking_pod(pods, _nodes(ftj), job)
        stored = ftj.get("status") or {}
        baseline = self.status.baseline(key, stored)
        result = compute(
            {**ftj, "status": {**stored, **baseline}},
            job,
            pod,
            job_expected=expected,
            image_pull_grace_seconds=self.cfg.image_pull_grace_seconds,
            blocked=self.children.blocked.get(key),
            mount_problem=await self.pod_events.mount_problem(key, pod),
            patch_refused=self.jobs.refused.get(key),
            fetch=fetch,
            node_gpu_memory_bytes=await self._node_gpu_memory(stored, pod),
            pods=tuple(pods),
        )
        gpus = int(((ftj.get("spec") or {}).get("resources") or {}).get("gpus", 1)) * _nodes(ftj)
        self.job_metrics.set(key, {**stored, **result.status}, gpus, dt.datetime.now(dt.UTC))
        try:
            if not await self.status.write(key, ftj, baseline, result, creating=self.children.creating > 0):
                self.forget(key)
                return
        except Deferred as d:
            self.enqueue(key, d.delay)
            return
        final = is_final(result.status.get("phase"))
        if final and job is None:
            await self.fetches.stop(fetch)
        await self._after_status(key, ftj, job, pod, final, result.suspend_job)
        if result.requeue_after:
            self.enqueue(key, result.requeue_after)

    async def _node_gpu_memory(self, stored: dict[str, Any], pod: dict[str, Any] | None) -> int | None:
        """A GPU's memory on the pod's node, looked up only once the trainer reported a plan to check."""
        node = node_name(pod)
        if not node or not (stored.get("plan") or {}).get("requiredBytes") or is_final(stored.get("phase")):
            return None
        return await self.node_gpus.of(node)

    async def _job_and_pods(
        self, key: Key, ftj: dict[str, Any], job: dict[str, Any] | None, expected: bool
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """This run's Job (looked up before calling it deleted: maybe someone removed its labels)
        and its pods (looked up when the Job finished: the result is in a pod)."""
        recorded = self.status.recorded(key, ftj)
        if job is None and not expected and recorded.get("jobName") and not is_final(recorded.get("phase")):
            job = await self.jobs.find_job(ftj)
        pods = self.views.pods_of(key, job["metadata"]["uid"]) if job else []
        if job is not None and not pods and job_finished(job):
            pods = await self.jobs.find_pods(job)
        return job, pods

    async def _after_status(
        self,
        key: Key,
        ftj: dict[str, Any],
        job: dict[str, Any] | None,
        pod: dict[str, Any] | None,
        final: bool,
        suspend_job: bool,
    ) -> None:
        """Once the status is written: converge the Job, heal prerequisites, schedule look-agains."""
        if job is not None:
            if await self.jobs.converge(key, ftj, job, final, suspend_job, self.children.ensure_prerequisites):
                self.enqueue(key, STATUS_DELAY)  # the status must say the change was refused
            if not final and self.children.prerequisites_due(key, job, pod, ftj.get("status") or {}):
                await self.children.ensure_prerequisites(ftj)
            if not final and pod is None and not (job.get("spec") or {}).get("suspend"):
                self.enqueue(key, POD_EXPECTED_WITHIN)  # no event may come: look again for lost prerequisites
            look_again = None if final else look_again_in(pod, dt.datetime.now(dt.UTC))
            if look_again is not None:
                self.enqueue(key, look_again)  # mount failures show only as Events
        blocked = self.children.blocked.get(key)
        if blocked is not None and not blocked.final and job is None:
            self.enqueue(key, blocked.retry_after)

    async def cleanup_output(self, ftj: dict[str, Any], retry: int) -> None:
        await self.output.run(ftj, retry)


def _nodes(ftj: dict[str, Any]) -> int:
    """``spec.resources.nodes`` as stored (1 when absent or unreadable: the status says InvalidSpec)."""
    nodes = ((ftj.get("spec") or {}).get("resources") or {}).get("nodes", 1)
    return nodes if isinstance(nodes, int) and nodes >= 1 else 1
