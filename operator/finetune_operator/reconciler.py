"""The reconciler: one FineTuneJob at a time, from the in-memory views to the API server.

``reconcile(key)`` is level-triggered (it works from the latest state, whatever event woke it):

1. Children: when this run's Job is neither in the view nor was created before
   (``status.jobName``): the ConfigMap, ServiceAccount and RoleBinding, a server-side dry run of
   the trainer pod, then the Job. Only objects this FineTuneJob created count as its children
   (controller owner reference with its uid): an existing object of the same name that it did not
   create is a NameConflict, never adopted; one left by an earlier FineTuneJob of the same name is
   waited for (the garbage collector removes it). Refusals by the API server become a status.
2. The status: recomputed from the views (no GETs) with ``status.compute`` and merge-patched
   only when it changed, at most once per ``status_min_interval_seconds`` per object.
3. The Job: ``spec.suspend`` follows the FineTuneJob's; ``ttlSecondsAfterFinished`` is set only
   once the final status (with the trainer's result) is recorded.

``cleanup_output`` handles the deletion of a ``retention: Delete`` FineTuneJob.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from typing import Any

import kopf

from finetune_api import KIND
from finetune_api.protocol import FailureReason
from finetune_api.resource import FineTuneJobSpec

from . import builders, metrics
from . import status as status_mod
from .config import OperatorConfig
from .kube import ApiError, KubeClient, collection_path, object_path
from .workqueue import RetryLater, WorkQueue

logger = logging.getLogger("finetune_operator")
Key = tuple[str, str]  # (namespace, FineTuneJob name)
STATUS_DELAY = 0.3  # coalesce bursts of Job/Pod events into one status computation
BUSY_STATUS_DELAY = 1.0  # while children are being created, non-final status writes wait
JOB_EXPECTED_FOR = 120.0  # a created Job not seen in the view after this long is looked at as missing
PREREQUISITES_CHECK = 30.0  # re-create a deleted ConfigMap/ServiceAccount/RoleBinding at most this often
POD_EXPECTED_WITHIN = 20.0  # a Job without a pod after this long may be missing its prerequisites


class NameConflict(Exception):
    """An object the operator would create exists and was not created by this FineTuneJob."""


class CreateFailed(Exception):
    """Creating a run's children failed in a way worth retrying (counted as step="create")."""


class Views:
    """Read access to kopf's in-memory indexes (filled before any handler runs), handed over as
    the ``kopf.Index`` keyword arguments of the event handlers (kopf's documented index access)."""

    def __init__(self) -> None:
        self.ftjs: Any = {}
        self.jobs: Any = {}
        self.pods: Any = {}

    def update(self, ftj_index: Any, job_index: Any, pod_index: Any) -> None:
        self.ftjs, self.jobs, self.pods = ftj_index, job_index, pod_index

    def ftj(self, key: Key) -> dict[str, Any] | None:
        for packed in self.ftjs.get(key) or ():
            return json.loads(packed) if isinstance(packed, str) else packed
        return None

    def job(self, key: Key, ftj_uid: str) -> dict[str, Any] | None:
        """This run's Job: named ``<name>-trainer`` and controlled by the FineTuneJob with ``ftj_uid``."""
        wanted = builders.job_name(key[1])
        return next(
            (
                j
                for j in self.jobs.get(key) or ()
                if j["metadata"]["name"] == wanted and j["metadata"]["controllerUid"] == ftj_uid
            ),
            None,
        )

    def pods_of(self, key: Key, job_uid: str) -> list[dict[str, Any]]:
        return [p for p in self.pods.get(key) or () if p["metadata"]["controllerUid"] == job_uid]


class Reconciler:
    """The operator's state (shared by the handlers through ``memo.reconciler``)."""

    def __init__(self, cfg: OperatorConfig, client: KubeClient):
        self.cfg = cfg
        self.client = client
        self.views = Views()
        self.queue: WorkQueue[Key] = WorkQueue(self._process, self._count_failure)
        self.job_metrics = metrics.JobMetrics()
        self.last_written: dict[Key, dict[str, Any]] = {}
        self.last_write_at: dict[Key, float] = {}
        self.unseen_writes: set[Key] = set()  # written here, not yet delivered back by the watch
        self.expected_jobs: dict[Key, tuple[str, float]] = {}  # created, not yet in the view: (ftj uid, when)
        self.blocked: dict[Key, status_mod.ChildrenBlocked] = {}
        self.prerequisites_checked: dict[Key, float] = {}
        self.creating = 0  # ensure_children in flight: status writes yield to them
        self._write_slots = asyncio.Semaphore(16)
        self._create_slots = asyncio.Semaphore(32)

    def enqueue(self, key: Key, delay: float = 0.0) -> None:
        self.queue.enqueue(key, delay)

    def forget(self, key: Key) -> None:
        for state in (
            self.last_written,
            self.last_write_at,
            self.expected_jobs,
            self.blocked,
            self.prerequisites_checked,
        ):
            state.pop(key, None)
        self.unseen_writes.discard(key)
        self.job_metrics.forget(key)
        self.queue.forget(key)

    async def _process(self, key: Key) -> None:
        started = time.monotonic()
        try:
            await self.reconcile(key)
        finally:
            metrics.RECONCILE_LATENCY.labels(step="status").observe(time.monotonic() - started)

    @staticmethod
    def _count_failure(key: Key, error: Exception) -> None:
        metrics.RECONCILE_ERRORS.labels(step="create" if isinstance(error, CreateFailed) else "status").inc()

    # --- the reconcile -------------------------------------------------------------------------

    def _recorded(self, key: Key, ftj: dict[str, Any]) -> dict[str, Any]:
        """The operator-owned status as last written (this process) or as stored."""
        return self.last_written.get(key) or status_mod.owned_part(ftj.get("status"))

    async def reconcile(self, key: Key) -> None:
        ftj = self.views.ftj(key)
        if ftj is None:
            self.forget(key)
            return
        meta = ftj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        uid = meta["uid"]
        job = self.views.job(key, uid)
        if job is not None:
            self.expected_jobs.pop(key, None)
        elif await self.ensure_children(key, ftj):
            self.enqueue(key, STATUS_DELAY)  # report once the watch has delivered the new Job
            return
        expected = self.expected_jobs.get(key)
        if expected is not None and (expected[0] != uid or time.monotonic() - expected[1] > JOB_EXPECTED_FOR):
            self.expected_jobs.pop(key, None)
            expected = None
        recorded = self._recorded(key, ftj)
        if (
            job is None
            and expected is None
            and recorded.get("jobName")
            and not status_mod.is_final(recorded.get("phase"))
        ):
            job = await self._find_job(ftj)  # before calling it deleted: maybe someone removed its labels
        pod = status_mod.latest_pod(self.views.pods_of(key, job["metadata"]["uid"])) if job else None
        if job is not None and pod is None and status_mod.job_finished(job):
            pod = await self._find_pod(job)  # the result is in the pod: look it up before calling it gone

        stored = ftj.get("status") or {}
        baseline = self._baseline(key, stored)
        view = {**ftj, "status": {**stored, **baseline}}
        result = status_mod.compute(
            view,
            job,
            pod,
            job_expected=expected is not None,
            image_pull_grace_seconds=self.cfg.image_pull_grace_seconds,
            blocked=self.blocked.get(key),
        )
        self.job_metrics.set(
            key,
            {**stored, **result.status},
            int(((ftj.get("spec") or {}).get("resources") or {}).get("gpus", 1)),
            dt.datetime.now(dt.UTC),
        )
        if not await self._write_status(key, ftj, baseline, result):
            return
        final = status_mod.is_final(result.status.get("phase"))
        if job is not None:
            await self._converge_job(ftj, job, final, result.suspend_job)
            if not final and self._prerequisites_due(key, job, pod, stored):
                await self.ensure_prerequisites(ftj)
            if not final and pod is None and not (job.get("spec") or {}).get("suspend"):
                self.enqueue(key, POD_EXPECTED_WITHIN)  # no event may come: look again for lost prerequisites
        blocked = self.blocked.get(key)
        if blocked is not None and not blocked.final and job is None:
            self.enqueue(key, blocked.retry_after)
        if result.requeue_after:
            self.enqueue(key, result.requeue_after)

    def _baseline(self, key: Key, stored: dict[str, Any]) -> dict[str, Any]:
        """The status to diff against: what this process wrote last, until the watch shows it;
        after that what is stored, so a change someone else made is seen (and corrected)."""
        written, owned = self.last_written.get(key), status_mod.owned_part(stored)
        if written is None or owned == written:
            self.unseen_writes.discard(key)
            return owned
        return written if key in self.unseen_writes else owned

    async def _write_status(
        self, key: Key, ftj: dict[str, Any], baseline: dict[str, Any], result: status_mod.Result
    ) -> bool:
        """Patch the status if it changed. False when the write was deferred (or the object is gone)."""
        patch = status_mod.merge_patch(baseline, result.status)
        if not patch:
            return True
        wait = self.cfg.status_min_interval_seconds - (time.monotonic() - self.last_write_at.get(key, -1e9))
        if self.creating and not result.transitioned_to_final:
            wait = max(wait, BUSY_STATUS_DELAY)  # a burst of new runs: create first, report after
        if wait > 0 and not result.transitioned_to_final:
            self.enqueue(key, wait)
            return False
        async with self._write_slots:
            try:
                await self.client.merge_patch(object_path(ftj) + "/status", {"status": patch})
            except ApiError as e:
                if e.status == 404:
                    self.forget(key)
                    return False
                raise
        metrics.STATUS_WRITES.inc()
        self.last_written[key] = result.status
        self.last_write_at[key] = time.monotonic()
        self.unseen_writes.add(key)
        meta = ftj["metadata"]
        if result.event:
            etype, reason, message = result.event
            if etype == "Warning" or baseline.get("phase") != result.status["phase"]:
                post_event(ftj, etype, reason, message)  # one event per phase, plus every warning
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
        return True

    # --- the Job -------------------------------------------------------------------------------

    async def _find_job(self, ftj: dict[str, Any]) -> dict[str, Any] | None:
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
        if status_mod.controller_uid(job) != meta["uid"]:
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
        return status_mod.job_summary(job)

    async def _find_pod(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """The finished Job's latest pod, by the Job controller's own label (ours may have been removed)."""
        meta = job["metadata"]
        found = await self.client.get(
            collection_path("v1", "Pod", meta["namespace"]),
            params={"labelSelector": f"batch.kubernetes.io/controller-uid={meta['uid']}"},
        )
        pods = [status_mod.pod_summary(p) for p in (found or {}).get("items") or []]
        return status_mod.latest_pod([p for p in pods if p["metadata"]["controllerUid"] == meta["uid"]])

    async def _converge_job(self, ftj: dict[str, Any], job: dict[str, Any], final: bool, suspend_failed: bool) -> None:
        """spec.suspend of a running Job follows the FineTuneJob (Kueue unsuspends queued Jobs); once
        the outcome is recorded, ttlSecondsAfterFinished follows the FineTuneJob's."""
        spec = ftj.get("spec") or {}
        have = job.get("spec") or {}
        changes: dict[str, Any] = {}
        if final:
            if suspend_failed and not have.get("suspend"):
                changes["suspend"] = True
            want_ttl = spec.get("ttlSecondsAfterFinished")
            if status_mod.job_finished(job) and have.get("ttlSecondsAfterFinished") != want_ttl:
                changes["ttlSecondsAfterFinished"] = want_ttl
        else:
            want = bool(spec.get("suspend"))
            queued = bool((spec.get("scheduling") or {}).get("queueName"))
            if want != bool(have.get("suspend")) and not (queued and not want):
                changes["suspend"] = want
        if changes.get("suspend") is False:
            await self.ensure_prerequisites(ftj)  # a suspended run may have lost them meanwhile
        if changes:
            await self._patch_job(job, changes)

    async def _patch_job(self, job: dict[str, Any], spec_changes: dict[str, Any]) -> None:
        """Merge-patch this run's Job (the uid in the patch makes it fail on any other object)."""
        meta = job["metadata"]
        path = f"{collection_path('batch/v1', 'Job', meta['namespace'])}/{meta['name']}"
        try:
            await self.client.merge_patch(path, {"metadata": {"uid": meta["uid"]}, "spec": spec_changes})
        except ApiError as e:
            if e.status not in (404, 409, 422):  # gone, or no longer this run's Job
                raise

    # --- children ------------------------------------------------------------------------------

    def _may_create(self, key: Key, ftj: dict[str, Any]) -> bool:
        """Create the children only for a live, unfinished run whose Job was never created."""
        recorded = self._recorded(key, ftj)
        blocked = self.blocked.get(key)
        return not (
            ftj["metadata"].get("deletionTimestamp")
            or status_mod.is_final(recorded.get("phase"))
            or recorded.get("jobName")
            or key in self.expected_jobs
            or (blocked and blocked.final)
        )

    async def ensure_children(self, key: Key, ftj: dict[str, Any]) -> bool:
        """Create the run's children; True when it did. When the API server refuses one, the reason
        is kept in ``blocked`` for the status (retried later unless it is final)."""
        if not self._may_create(key, ftj):
            return False
        try:
            spec = builders.parse_spec(ftj)
        except builders.InvalidSpec:
            return False  # permanent: the status says Failed/InvalidSpec
        job = builders.job(ftj, spec, self.cfg)
        await self._create_slots.acquire()
        self.creating += 1
        started = time.monotonic()
        try:
            await self.ensure_prerequisites(ftj, spec)
            await self._dry_run(builders.dry_run_pod(job))
            self.expected_jobs[key] = (ftj["metadata"]["uid"], time.monotonic())
            await self._create_owned(ftj, job)
        except NameConflict as e:
            self.expected_jobs.pop(key, None)
            self.blocked[key] = status_mod.ChildrenBlocked(FailureReason.NAME_CONFLICT, str(e), final=True)
            return False
        except _Refused as e:
            self.expected_jobs.pop(key, None)
            self.blocked[key] = e.blocked
            return False
        except RetryLater:
            self.expected_jobs.pop(key, None)
            raise
        except Exception as e:
            self.expected_jobs.pop(key, None)
            if not self.queue.failures(key):
                post_event(ftj, "Warning", "CreateFailed", f"creating the trainer's objects failed (retrying): {e}")
            raise CreateFailed(str(e)) from e
        finally:
            self.creating -= 1
            self._create_slots.release()
        self.blocked.pop(key, None)
        metrics.RECONCILE_LATENCY.labels(step="create").observe(time.monotonic() - started)
        logger.info(
            "%s/%s: created Job %s",
            key[0],
            key[1],
            job["metadata"]["name"],
            extra={"finetunejob": f"{key[0]}/{key[1]}"},
        )
        return True

    async def ensure_prerequisites(self, ftj: dict[str, Any], spec: FineTuneJobSpec | None = None) -> None:
        """The ConfigMap, ServiceAccount and RoleBinding the trainer pod needs (created at once)."""
        spec = spec or builders.parse_spec(ftj)
        objs = builders.pod_prerequisites(ftj, spec, self.cfg)
        if self.cfg.status_patch:
            objs.append(builders.role_binding(ftj, self.cfg))
        await asyncio.gather(*(self._create_owned(ftj, o) for o in objs))

    def _prerequisites_due(
        self, key: Key, job: dict[str, Any], pod: dict[str, Any] | None, stored: dict[str, Any]
    ) -> bool:
        """Whether a running Job looks like it lost its ConfigMap, ServiceAccount or RoleBinding
        (deleted by someone): its pod cannot get its config, the Job has had no pod for a while, or
        the running trainer's progress reports stopped arriving (its RoleBinding is gone)."""
        if time.monotonic() - self.prerequisites_checked.get(key, -1e9) < PREREQUISITES_CHECK:
            return False
        if self._progress_stale(pod, stored):
            self.prerequisites_checked[key] = time.monotonic()
            return True
        waiting = ((status_mod.trainer_container_status(pod) or {}).get("state") or {}).get("waiting") or {}
        created = status_mod.parse_time(job["metadata"].get("creationTimestamp"))
        podless = (
            pod is None
            and not status_mod.job_finished(job)
            and not (job.get("spec") or {}).get("suspend")
            and created is not None
            and time.time() - created.timestamp() > POD_EXPECTED_WITHIN
        )
        if waiting.get("reason") in status_mod.CONFIG_ERROR_REASONS or podless:
            self.prerequisites_checked[key] = time.monotonic()
            return True
        return False

    def _progress_stale(self, pod: dict[str, Any] | None, stored: dict[str, Any]) -> bool:
        """A trainer running for a while whose last progress report is older than three intervals."""
        if not self.cfg.status_patch or pod is None or ((pod.get("status") or {}).get("phase")) != "Running":
            return False
        now = time.time()
        limit = 3 * self.cfg.status_patch_interval_seconds + POD_EXPECTED_WITHIN
        started = status_mod.parse_time((pod.get("status") or {}).get("startTime"))
        updated = status_mod.parse_time((stored.get("progress") or {}).get("updatedAt"))
        last = updated or started
        return (
            last is not None
            and (started is None or now - started.timestamp() > limit)
            and now - last.timestamp() > limit
        )

    async def _dry_run(self, pod: dict[str, Any]) -> None:
        """Admission's answer for the trainer pod (Pod Security, PriorityClass, LimitRange, validation)."""
        pod = {**pod, "metadata": {**pod["metadata"]}}
        pod["metadata"]["generateName"] = pod["metadata"].pop("name")
        path = collection_path("v1", "Pod", pod["metadata"]["namespace"])
        try:
            await self.client.create(path, pod, params={"dryRun": "All"})
        except ApiError as e:
            blocked = status_mod.refusal(e.status, e.message or "", "the trainer pod")
            if blocked is None:
                raise
            raise _Refused(blocked) from e

    async def _create_owned(self, ftj: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``; if it exists, accept it only when this FineTuneJob created it."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        path = collection_path(obj["apiVersion"], kind, obj["metadata"]["namespace"])
        try:
            return await self.client.create(path, obj)
        except ApiError as e:
            if e.status != 409:
                blocked = status_mod.refusal(e.status, e.message or "", f"{kind} {name}")
                if blocked is None:
                    raise
                raise _Refused(blocked) from e
        existing = await self.client.get(object_path(obj))
        uid = ftj["metadata"]["uid"]
        owner = next(
            (o for o in (existing.get("metadata") or {}).get("ownerReferences") or [] if o.get("controller")), None
        )
        if owner is not None and owner.get("uid") == uid:
            return existing  # created by this run before a restart
        if owner is not None and owner.get("kind") == KIND and owner.get("name") == ftj["metadata"]["name"]:
            raise RetryLater(
                f"{kind} {name} belongs to an earlier FineTuneJob of this name (uid {owner.get('uid')}); "
                "waiting for the garbage collector to remove it",
                delay=5,
            )
        by = f"controlled by {owner.get('kind')} {owner.get('name')}" if owner else "not created by the operator"
        raise NameConflict(
            f"{kind} {name} already exists in namespace {obj['metadata']['namespace']} and was not "
            f"created by this FineTuneJob ({by}); the operator never takes over objects it did not "
            "create: rename the FineTuneJob, or delete that object and re-create the FineTuneJob"
        )

    # --- deletion ------------------------------------------------------------------------------

    async def cleanup_output(self, ftj: dict[str, Any], retry: int) -> None:
        """``output.retention: Delete``: stop this run's Job, then remove the files this run wrote
        (a Job running ``finetune-train cleanup``, which keeps anything that is not this run's)."""
        try:
            spec = builders.parse_spec(ftj)
        except builders.InvalidSpec:
            return
        meta = ftj["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        job = self.views.job(key, meta["uid"])
        if job is not None:
            try:
                await self.client.delete(
                    object_path({"apiVersion": "batch/v1", "kind": "Job", "metadata": job["metadata"]}),
                    {"propagationPolicy": "Background", "preconditions": {"uid": job["metadata"]["uid"]}},
                )
            except ApiError as e:
                if e.status not in (404, 409):
                    raise
        where = builders.output_dir(spec, meta["namespace"], meta["name"])
        try:
            cleanup = await self._create_owned(ftj, builders.cleanup_job(ftj, spec, self.cfg))
        except (NameConflict, _Refused) as e:
            post_event(ftj, "Warning", "OutputCleanupFailed", f"could not start the cleanup of {where}: {e}")
            return
        conds = status_mod.true_conditions(cleanup)
        if "Complete" in conds:
            outcome, message = await self._cleanup_result(cleanup)
            post_event(
                ftj,
                "Normal" if outcome == "removed" else "Warning",
                "OutputDeleted" if outcome == "removed" else "OutputKept",
                message,
            )
            return
        if "Failed" in conds or retry >= 60:
            post_event(ftj, "Warning", "OutputCleanupFailed", f"could not remove {where}; remove it by hand")
            return
        raise kopf.TemporaryError("waiting for the output cleanup Job", delay=5)

    async def _cleanup_result(self, cleanup_job: dict[str, Any]) -> tuple[str, str]:
        """(outcome, message) from the cleanup pod's termination message (a JSON line)."""
        meta = cleanup_job["metadata"]
        pods = await self.client.get(
            collection_path("v1", "Pod", meta["namespace"]),
            params={"labelSelector": f"batch.kubernetes.io/controller-uid={meta['uid']}"},
        )
        for pod in (pods or {}).get("items") or []:
            term = status_mod.terminated_state(pod) or {}
            try:
                record = json.loads(term.get("message") or "")
                return str(record["outcome"]), status_mod.one_line(str(record["message"]))
            except (ValueError, KeyError, TypeError):
                continue
        return "unknown", f"the cleanup Job {meta['name']} completed without reporting what it removed"


class _Refused(Exception):
    """The API server refused a child; ``blocked`` says why, for the status."""

    def __init__(self, blocked: status_mod.ChildrenBlocked):
        super().__init__(blocked.message)
        self.blocked = blocked


def post_event(ftj: dict[str, Any], etype: str, reason: str, message: str) -> None:
    # kopf types the object as its Body view; it reads any mapping with apiVersion, kind and metadata.
    try:
        if etype == "Warning":
            kopf.warn(ftj, reason=reason, message=message)  # type: ignore[arg-type]
        else:
            kopf.info(ftj, reason=reason, message=message)  # type: ignore[arg-type]
    except Exception as e:  # noqa: BLE001 - events are best effort
        logger.debug("could not post an event: %s", e)
