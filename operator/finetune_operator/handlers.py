"""Thin kopf handlers: only I/O. What to create comes from ``builders``, what to report from ``status``.

Level-triggered design: every watch event of a FineTuneJob (including kopf's initial listing at
startup, i.e. "resume", and ``spec.suspend`` changes), of a Job or of a Pod labelled
``finetune.dev/finetunejob`` (server-side label selector) only ``enqueue(key)``s. A per-FineTuneJob
serialized, debounced ``reconcile``:

1. ``ensure_children`` when the Job is neither in the in-memory index (kopf fills indexes before
   any handler runs) nor was created before (``status.jobName``): ConfigMap and ServiceAccount,
   then the Job; the trainer's Role and RoleBinding in a later pass (``ensure_rbac``). 409
   AlreadyExists -> read and adopt; never a second Job, whenever the operator is killed. Failures
   are retried with exponential backoff.
2. recomputes the status from the indexes (no GETs) with ``status.compute`` and merge-patches
   ``/status`` only when it changed, at most once per ``status_min_interval_seconds`` per object;
3. converges the Job's ``spec.suspend`` to the FineTuneJob's.

``on.delete`` (only for ``output.retention: Delete``, so only those carry the finalizer) runs a
cleanup Job removing the output directory. No create/update handlers: kopf writes nothing to a
FineTuneJob except for that deletion handler, whose bookkeeping (progress) lives in annotations
with the ``finetune.dev`` prefix, never in spec or status.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import time
from typing import Any

import kopf

from finetune_api import GROUP, PLURAL, VERSION
from finetune_api.resource import Phase

from . import builders, metrics
from . import status as status_mod
from .config import OperatorConfig
from .kube import ApiError, KubeClient, collection_path, object_path

logger = logging.getLogger("finetune_operator")
REGISTRY = kopf.OperatorRegistry()
FINALIZER = f"{GROUP}/cleanup"
OWN_CHILDREN = {builders.LABEL_JOB: kopf.PRESENT, builders.LABEL_COMPONENT: "trainer"}
Key = tuple[str, str]  # (namespace, label value of the FineTuneJob name)
STATUS_DELAY = 0.3  # coalesce bursts of Job/Pod events into one status computation
BUSY_STATUS_DELAY = 1.0  # while children are being created, non-final status writes wait
WORKER_LIMIT = 100  # kopf's per-object workers running at once
RBAC_MAX_DEFER = 10.0  # the trainer's Role/RoleBinding wait at most this long behind new Jobs


class RetryLater(Exception):
    def __init__(self, message: str, delay: float):
        super().__init__(message)
        self.delay = delay


def key_of(namespace: str, name: str) -> Key:
    return (namespace, builders.label_value(name))


def configure_settings(settings: kopf.OperatorSettings) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration", ignored_fields=["status"])
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    settings.scanning.disabled = True  # no CRD/namespace watching: fewer permissions
    # server-side filtering: only our own Jobs and Pods are listed, watched and kept in memory
    own = f"{builders.LABEL_JOB},{builders.LABEL_COMPONENT}=trainer"
    settings.watching.label_selectors[("batch", "v1", "jobs")] = own
    settings.watching.label_selectors[("", "v1", "pods")] = own
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Memory (docs/benchmarks.md): kopf gives every object its own worker task. Unbounded, the
    # initial listing of 1,000 FineTuneJobs and their Jobs runs 2,000 workers at once, and the
    # memory of that peak stays fragmented afterwards. Our handlers only index and enqueue (the
    # reconcile runs in our own queue), so 100 workers that exit 0.1 s after their last event
    # keep up with bursts; the listing comes in pages of 100.
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = 0.1
    settings.watching.chunk_size = 100
    settings.networking.request_timeout = 60


class Operator:
    """State shared by the handlers (through ``memo.op``)."""

    def __init__(self, cfg: OperatorConfig, client: KubeClient):
        self.cfg = cfg
        self.client = client
        self.indices: dict[str, Any] = {}
        self.phases = metrics.PhaseTracker()
        self.last_written: dict[Key, dict[str, Any]] = {}
        self.last_write_at: dict[Key, float] = {}
        self.expected_jobs: dict[Key, float] = {}  # created/adopted, not yet seen in the index
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._tasks: set[asyncio.Task] = set()
        self._write_slots = asyncio.Semaphore(16)
        self._create_slots = asyncio.Semaphore(32)
        self.creating = 0  # ensure_children in flight: status writes yield to them
        self.rbac_todo: dict[Key, float] = {}  # Job created, trainer Role/RoleBinding not yet (since when)
        self.rbac_done: set[Key] = set()
        self._failures: dict[Key, int] = {}

    # --- indexes -------------------------------------------------------------------------------

    def capture(self, kwargs: dict[str, Any]) -> None:
        for name in ("ftj_index", "job_index", "pod_index"):
            if name in kwargs and name not in self.indices:
                self.indices[name] = kwargs[name]

    def ftj(self, key: Key) -> dict[str, Any] | None:
        store = self.indices.get("ftj_index", {}).get(key)
        for value in store or ():
            return json.loads(value) if isinstance(value, str) else value  # packed by ftj_index
        return None

    def job(self, key: Key, name: str) -> dict[str, Any] | None:
        wanted = builders.job_name(name)
        for value in self.indices.get("job_index", {}).get(key) or ():
            if value["metadata"]["name"] == wanted:
                return value
        return None

    def pods(self, key: Key) -> list[dict[str, Any]]:
        return list(self.indices.get("pod_index", {}).get(key) or ())

    # --- the work queue ------------------------------------------------------------------------

    def enqueue(self, key: Key, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        handle = self._timers.get(key)
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        if key in self._running:
            self._dirty.add(key)
            return
        self._running.add(key)
        task = asyncio.create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Key) -> None:
        try:
            while True:
                self._dirty.discard(key)
                started = time.monotonic()
                try:
                    await self.reconcile(key)
                    self._failures.pop(key, None)
                except Exception as e:  # noqa: BLE001 - retried with backoff
                    if not getattr(e, "counted", False):  # creation errors are counted as step=create
                        metrics.RECONCILE_ERRORS.labels(step="status").inc()
                    failures = self._failures[key] = self._failures.get(key, 0) + 1
                    delay = e.delay if isinstance(e, RetryLater) else min(60.0, 0.5 * 2 ** min(failures, 7))
                    logger.warning("reconcile of %s/%s failed (retry in %.1fs): %s", key[0], key[1], delay, e)
                    self.enqueue(key, delay)
                finally:
                    metrics.RECONCILE_LATENCY.labels(step="status").observe(time.monotonic() - started)
                if key not in self._dirty:
                    break
        finally:
            self._running.discard(key)

    def forget(self, key: Key) -> None:
        self.rbac_todo.pop(key, None)
        self.rbac_done.discard(key)
        self.last_written.pop(key, None)
        self.last_write_at.pop(key, None)
        self.expected_jobs.pop(key, None)
        self.phases.forget(key)
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    # --- status --------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        """Level-triggered: create the children if they are missing (and never were created), then
        recompute the status and write it if it changed."""
        ftj = self.ftj(key)
        if ftj is None:
            self.forget(key)
            return
        meta = ftj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        name, namespace = meta["name"], meta["namespace"]
        job = self.job(key, name)
        if job is not None:
            self.expected_jobs.pop(key, None)
        elif await self.ensure_children(ftj):
            self.enqueue(key, STATUS_DELAY)  # report once the watch has delivered the new Job
            return
        expected_at = self.expected_jobs.get(key)
        if expected_at is not None and time.monotonic() - expected_at > 120:
            self.expected_jobs.pop(key, None)
            expected_at = None
        pod = status_mod.latest_pod([p for p in self.pods(key)
                                     if job is None or p["metadata"].get("labels", {}).get("job-name") in (None, job["metadata"]["name"])])
        rbac_error: Exception | None = None
        if self._rbac_wanted(key, ftj, job, pod):
            try:
                await self.ensure_rbac(key, ftj)
            except Exception as e:  # noqa: BLE001 - the status is still reported; retried below
                rbac_error = e
        stored = ftj.get("status") or {}
        baseline = self.last_written.get(key)
        if baseline is None or status_mod.owned_part(stored) == baseline:
            baseline = status_mod.owned_part(stored)
        view = {**ftj, "status": {**stored, **baseline}}
        result = status_mod.compute(view, job, pod, job_expected=expected_at is not None,
                                    image_pull_grace_seconds=self.cfg.image_pull_grace_seconds)
        self.phases.set(key, result.status.get("phase"))
        patch = status_mod.merge_patch(baseline, result.status)
        if patch:
            wait = self.cfg.status_min_interval_seconds - (time.monotonic() - self.last_write_at.get(key, -1e9))
            if self.creating and not result.transitioned_to_final:
                wait = max(wait, BUSY_STATUS_DELAY)  # a burst of new runs: create first, report after
            if wait > 0 and not result.transitioned_to_final:
                self.enqueue(key, wait)
                return
            async with self._write_slots:
                try:
                    await self.client.merge_patch(object_path(ftj) + "/status", {"status": patch})
                except ApiError as e:
                    if e.status == 404:
                        self.forget(key)
                        return
                    raise
            metrics.STATUS_WRITES.inc()
            self.last_written[key] = result.status
            self.last_write_at[key] = time.monotonic()
            if result.event:
                etype, reason, message = result.event
                if etype == "Warning" or baseline.get("phase") != result.status["phase"]:
                    post_event(ftj, etype, reason, message)  # one event per phase, plus every warning
                logger.info("%s/%s: %s", namespace, name, message,
                            extra={"finetunejob": f"{namespace}/{name}", "phase": result.status["phase"],
                                   "reason": reason})
            if result.transitioned_to_final:
                metrics.observe_final(result.status["phase"], result.status.get("durationSeconds"),
                                      result.status.get("gpuSeconds"))
        final = result.status.get("phase") in (Phase.SUCCEEDED, Phase.FAILED)
        if job is not None and not final:
            await self._converge_suspend(ftj, job)
        if job is not None and result.suspend_job and not (job.get("spec") or {}).get("suspend"):
            await self._patch_job_suspend(namespace, job["metadata"]["name"], True)
        if result.requeue_after:
            self.enqueue(key, result.requeue_after)
        if rbac_error is not None:
            raise rbac_error  # retried with backoff (rbac_todo / rbac_done unchanged)

    async def _converge_suspend(self, ftj: dict[str, Any], job: dict[str, Any]) -> None:
        spec = ftj.get("spec") or {}
        want = bool(spec.get("suspend"))
        have = bool((job.get("spec") or {}).get("suspend"))
        queued = bool((spec.get("scheduling") or {}).get("queueName"))
        if want == have or (queued and not want):
            return  # with a Kueue queue, Kueue unsuspends (admits) the Job
        await self._patch_job_suspend(ftj["metadata"]["namespace"], job["metadata"]["name"], want)

    async def _patch_job_suspend(self, namespace: str, job_name: str, suspend: bool) -> None:
        path = f"{collection_path('batch/v1', 'Job', namespace)}/{job_name}"
        try:
            await self.client.merge_patch(path, {"spec": {"suspend": suspend}})
        except ApiError as e:
            if e.status != 404:
                raise

    # --- children ------------------------------------------------------------------------------

    async def ensure_children(self, ftj: dict[str, Any]) -> bool:
        """Create the children of a FineTuneJob whose Job is not in the index. Idempotent: 409
        AlreadyExists -> read and adopt. Returns True when it created (or adopted) them; False
        when it must not: final, being deleted, invalid spec, or a Job was created before
        (status.jobName: the Job was deleted -> JobDeleted, never silently recreated)."""
        meta = ftj["metadata"]
        name = meta["name"]
        key = key_of(meta["namespace"], name)
        st = ftj.get("status") or {}
        recorded = (self.last_written.get(key) or {}).get("jobName") or st.get("jobName")
        if (meta.get("deletionTimestamp") or st.get("phase") in (Phase.SUCCEEDED, Phase.FAILED)
                or recorded or key in self.expected_jobs or self.job(key, name) is not None):
            return False
        try:
            spec = builders.parse_spec(ftj)
        except builders.InvalidSpec:
            return False  # permanent: the status says Failed/InvalidSpec; nothing is retried
        objs = builders.children(ftj, spec, self.cfg)
        # Critical path first: the ConfigMap and ServiceAccount the pod needs, then the Job. The Role
        # and RoleBinding follow in a later reconcile (ensure_rbac).
        first = [o for o in objs if o["kind"] in ("ConfigMap", "ServiceAccount")]
        job = next(o for o in objs if o["kind"] == "Job")
        rbac = [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
        await self._create_slots.acquire()
        self.creating += 1
        started = time.monotonic()
        try:
            await asyncio.gather(*(self._create_or_adopt(ftj, o) for o in first))
            self.expected_jobs[key] = time.monotonic()
            await self._create_or_adopt(ftj, job)
        except Exception as e:
            self.expected_jobs.pop(key, None)
            metrics.RECONCILE_ERRORS.labels(step="create").inc()
            e.counted = True  # type: ignore[attr-defined]
            if not self._failures.get(key):
                post_event(ftj, "Warning", "CreateFailed", f"creating the trainer's objects failed (retrying): {e}")
            raise
        finally:
            self.creating -= 1
            self._create_slots.release()
        metrics.RECONCILE_LATENCY.labels(step="create").observe(time.monotonic() - started)
        if rbac:
            self.rbac_todo[key] = time.monotonic()  # by the next reconcile (enqueued by the caller)
        logger.info("%s/%s: created %s", meta["namespace"], name,
                    ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in [*first, job]),
                    extra={"finetunejob": f"{meta['namespace']}/{name}"})
        return True

    def _rbac_wanted(self, key: Key, ftj: dict[str, Any], job: dict[str, Any] | None,
                     pod: dict[str, Any] | None) -> bool:
        """Whether to (re)assert the trainer's Role and RoleBinding now: after creating the Job,
        and, once per process, for a run whose pod exists and is not final (an operator killed
        between creating the Job and the RBAC objects must not leave the trainer without them)."""
        if not self.cfg.status_patch or key in self.rbac_done:
            return False
        if key in self.rbac_todo:
            return True
        phase = (self.last_written.get(key) or ftj.get("status") or {}).get("phase")
        return job is not None and pod is not None and phase not in (Phase.SUCCEEDED, Phase.FAILED)

    async def ensure_rbac(self, key: Key, ftj: dict[str, Any]) -> None:
        """The trainer's Role, then its RoleBinding (the API server resolves the Role to check
        escalation). In a burst of new runs they wait (up to RBAC_MAX_DEFER s) so that Jobs are
        created first: the trainer needs them only for its first progress patch, seconds after it
        starts, and tolerates a refused one. Retried by the reconcile until they exist."""
        since = self.rbac_todo.get(key)
        if self.creating and since is not None and time.monotonic() - since < RBAC_MAX_DEFER:
            self.enqueue(key, BUSY_STATUS_DELAY)
            return
        for obj in (builders.role(ftj), builders.role_binding(ftj)):
            await self._create_or_adopt(ftj, obj)
        self.rbac_todo.pop(key, None)
        self.rbac_done.add(key)

    async def _create_or_adopt(self, ftj: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        path = collection_path(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"])
        try:
            return await self.client.create(path, obj)
        except ApiError as e:
            if e.status != 409:
                raise
        existing = await self.client.get(object_path(obj))
        owners = (existing.get("metadata") or {}).get("ownerReferences") or []
        uid = ftj["metadata"]["uid"]
        controller = next((o for o in owners if o.get("controller")), None)
        if controller is None:
            await self.client.merge_patch(object_path(obj), {"metadata": {
                "ownerReferences": owners + [builders.owner_reference(ftj)]}})
            logger.info("adopted existing %s %s", obj["kind"], obj["metadata"]["name"])
        elif controller.get("uid") != uid:
            raise RetryLater(f"{obj['kind']} {obj['metadata']['name']} belongs to another object "
                             f"({controller.get('kind')} uid {controller.get('uid')}); waiting for it "
                             "to be garbage-collected", delay=5)
        return existing

    # --- deletion ------------------------------------------------------------------------------

    async def cleanup_output(self, ftj: dict[str, Any], retry: int) -> None:
        """``output.retention: Delete``: stop the trainer, then remove the output directory."""
        try:
            spec = builders.parse_spec(ftj)
        except builders.InvalidSpec:
            return
        ns, name = ftj["metadata"]["namespace"], ftj["metadata"]["name"]
        try:
            await self.client.delete(f"{collection_path('batch/v1', 'Job', ns)}/{builders.job_name(name)}",
                                     {"propagationPolicy": "Background"})
        except ApiError as e:
            if e.status != 404:
                raise
        cleanup = builders.cleanup_job(ftj, spec, self.cfg)
        try:
            job = await self.client.create(collection_path("batch/v1", "Job", ns), cleanup)
        except ApiError as e:
            if e.status != 409:
                raise
            job = await self.client.get(object_path(cleanup))
        conds = status_mod._true_conditions(job)
        if "Complete" in conds:
            post_event(ftj, "Normal", "OutputDeleted", f"removed {builders.output_dir(spec, ns, name)}")
            return
        if "Failed" in conds or retry >= 60:
            post_event(ftj, "Warning", "OutputCleanupFailed",
                       f"could not remove {builders.output_dir(spec, ns, name)}; remove it by hand")
            return
        raise kopf.TemporaryError("waiting for the output cleanup Job", delay=5)


def post_event(ftj: dict[str, Any], etype: str, reason: str, message: str) -> None:
    try:
        if etype == "Warning":
            kopf.warn(ftj, reason=reason, message=message)
        else:
            kopf.info(ftj, reason=reason, message=message)
    except Exception as e:  # noqa: BLE001 - events are best effort
        logger.debug("could not post an event: %s", e)


def _op(memo: Any) -> Operator:
    return memo.op


def _trim_ftj(body: Any) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: copy.deepcopy(meta.get(k)) for k in
                     ("name", "namespace", "uid", "generation", "creationTimestamp", "deletionTimestamp",
                      "resourceVersion") if meta.get(k) is not None},
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy({k: v for k, v in dict(body.get("status") or {}).items() if k != "kopf"}),
    }


# --- indexes (kopf fills them before any handler runs) ----------------------------------------


@kopf.index(GROUP, VERSION, PLURAL, registry=REGISTRY)
async def ftj_index(namespace: str, name: str, body: Any, **_: Any) -> dict[Key, str]:
    # Kept as one compact JSON string (unpacked per reconcile, ~20 µs): a tree of small dicts per
    # object costs ~5x the memory and fragments the allocator (see docs/benchmarks.md).
    return {key_of(namespace, name): json.dumps(_trim_ftj(body), separators=(",", ":"))}


@kopf.index("batch", "v1", "jobs", labels=OWN_CHILDREN, registry=REGISTRY)
async def job_index(namespace: str, labels: Any, body: Any, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace, labels[builders.LABEL_JOB]): status_mod.job_summary(dict(body))}


@kopf.index("", "v1", "pods", labels=OWN_CHILDREN, registry=REGISTRY)
async def pod_index(namespace: str, labels: Any, body: Any, **_: Any) -> dict[Key, dict[str, Any]]:
    summary = status_mod.pod_summary(dict(body))
    summary["metadata"]["labels"] = {"job-name": labels.get("job-name") or labels.get("batch.kubernetes.io/job-name")}
    return {(namespace, labels[builders.LABEL_JOB]): summary}


# --- triggers ---------------------------------------------------------------------------------


@kopf.on.startup(registry=REGISTRY)
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure_settings(settings)


@kopf.on.cleanup(registry=REGISTRY)
async def cleanup(memo: Any, **_: Any) -> None:
    """kopf stopping on SIGTERM (its own signal handlers) leaves its waiter on our stop flag
    pending, which holds the exit for 5 s; setting the flag lets it end at once."""
    stop = getattr(memo, "stop", None)
    if stop is not None:
        stop.set()


@kopf.on.event(GROUP, VERSION, PLURAL, registry=REGISTRY)
async def ftj_event(type: str | None, namespace: str, name: str, memo: Any, **kwargs: Any) -> None:
    """Every FineTuneJob event, including the initial listing at startup (kopf's type None: the
    "resume" case) and spec.suspend changes, reconciles it at once."""
    op = _op(memo)
    op.capture(kwargs)
    key = key_of(namespace, name)
    if type == "DELETED":
        op.forget(key)
    else:
        op.enqueue(key)


@kopf.on.event("batch", "v1", "jobs", labels=OWN_CHILDREN, registry=REGISTRY)
async def job_event(type: str | None, namespace: str, labels: Any, memo: Any, **kwargs: Any) -> None:
    op = _op(memo)
    op.capture(kwargs)
    key = (namespace, labels[builders.LABEL_JOB])
    if type == "DELETED":
        op.expected_jobs.pop(key, None)
    op.enqueue(key, STATUS_DELAY)


@kopf.on.event("", "v1", "pods", labels=OWN_CHILDREN, registry=REGISTRY)
async def pod_event(namespace: str, labels: Any, memo: Any, **kwargs: Any) -> None:
    op = _op(memo)
    op.capture(kwargs)
    op.enqueue((namespace, labels[builders.LABEL_JOB]), STATUS_DELAY)


@kopf.on.delete(GROUP, VERSION, PLURAL, field="spec.output.retention", value="Delete", backoff=5, registry=REGISTRY)
async def delete_output(body: Any, memo: Any, retry: int, **kwargs: Any) -> None:
    await _op(memo).cleanup_output(_trim_ftj(body), retry)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
