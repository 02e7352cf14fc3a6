"""Creating a run's children: the ConfigMap, ServiceAccount and RoleBinding (and on several nodes
the headless Service; at once), a server-side dry run of the trainer pod, then the Job. The output
claim is read first where its access modes matter (``claims``): a claim several nodes or serving
replicas cannot share refuses the run before anything is created. Only objects this FineTuneJob created count
as its children (controller owner reference with its uid): an existing object of the same name
that it did not create is a NameConflict, never adopted; one left by an earlier FineTuneJob of the
same name is waited for (the garbage collector removes it). Refusals by the API server are kept
as ``blocked`` for the status. Also re-creates prerequisites someone deleted from a running run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from finetune_api import KIND
from finetune_api.protocol import FailureReason
from finetune_api.resource import FineTuneJobSpec

from . import builders, metrics
from .claims import claim_refusal, read_access_modes
from .config import OperatorConfig
from .events import post_event
from .gpumemory import NodeGpuMemory
from .kube import ApiError, KubeClient, collection_path, object_path
from .reasons import CONFIG_ERROR_REASONS
from .refusals import ChildrenBlocked, refusal
from .runstatus import is_final
from .summaries import job_finished, parse_time, waiting_state
from .views import Key
from .workqueue import RetryLater

logger = logging.getLogger("finetune_operator")
JOB_EXPECTED_FOR = 120.0  # a created Job not seen in the view after this long is looked at as missing
PREREQUISITES_CHECK = 30.0  # re-create a deleted ConfigMap/ServiceAccount/RoleBinding at most this often
POD_EXPECTED_WITHIN = 20.0  # a Job without a pod after this long may be missing its prerequisites


class NameConflict(Exception):
    """An object the operator would create exists and was not created by this FineTuneJob."""


class CreateFailed(Exception):
    """Creating a run's children failed in a way worth retrying (counted as step="create")."""


class Refused(Exception):
    """The API server refused a child; ``blocked`` says why, for the status."""

    def __init__(self, blocked: ChildrenBlocked):
        super().__init__(blocked.message)
        self.blocked = blocked


class ChildCreator:
    def __init__(self, cfg: OperatorConfig, client: KubeClient, earlier_failures: Callable[[Key], int]):
        self.cfg = cfg
        self.client = client
        self.earlier_failures = earlier_failures
        self.expected_jobs: dict[Key, tuple[str, float]] = {}  # created, not yet in the view: (ftj uid, when)
        self.blocked: dict[Key, ChildrenBlocked] = {}
        self.prerequisites_checked: dict[Key, float] = {}
        self.creating = 0  # ensure_children in flight: status writes yield to them
        self._slots = asyncio.Semaphore(32)
        self.node_gpus = NodeGpuMemory(client)

    def forget(self, key: Key) -> None:
        for state in (self.expected_jobs, self.blocked, self.prerequisites_checked):
            state.pop(key, None)

    def job_expected(self, key: Key, uid: str) -> bool:
        """Whether this run's Job was created here and the watch has not delivered it yet."""
        expected = self.expected_jobs.get(key)
        if expected is not None and (expected[0] != uid or time.monotonic() - expected[1] > JOB_EXPECTED_FOR):
            self.expected_jobs.pop(key, None)
            return False
        return expected is not None

    def _may_create(self, key: Key, ftj: dict[str, Any], recorded: dict[str, Any]) -> bool:
        """Create the children only for a live, unfinished run whose Job was never created."""
        blocked = self.blocked.get(key)
        return not (
            ftj["metadata"].get("deletionTimestamp")
            or is_final(recorded.get("phase"))
            or recorded.get("jobName")
            or key in self.expected_jobs
            or (blocked and blocked.final)
        )

    async def ensure_children(self, key: Key, ftj: dict[str, Any], recorded: dict[str, Any]) -> bool:
        """Create the run's children; True when it did. When the API server refuses one, the reason
        is kept in ``blocked`` for the status (retried later unless it is final)."""
        if not self._may_create(key, ftj, recorded):
            return False
        try:
            spec = builders.parse_spec(ftj)
        except builders.InvalidSpec:
            return False  # permanent: the status says Failed/InvalidSpec
        gpu_memory = (
            await self.node_gpus.smallest_of_product(spec.resources.gpu_product)
            if spec.resources.gpu_product and spec.resources.gpus
            else None
        )
        job = builders.job(ftj, spec, self.cfg, gpu_memory)
        await self._slots.acquire()
        self.creating += 1
        started = time.monotonic()
        try:
            modes = await self.usable_claim(key, spec)
            await self.ensure_prerequisites(ftj, spec, modes)
            await self._dry_run(builders.dry_run_pod(job))
            self.expected_jobs[key] = (ftj["metadata"]["uid"], time.monotonic())
            await self.create_owned(ftj, job)
        except (NameConflict, Refused) as e:
            self.expected_jobs.pop(key, None)
            self.blocked[key] = (
                e.blocked
                if isinstance(e, Refused)
                else ChildrenBlocked(FailureReason.NAME_CONFLICT, str(e), final=True)
            )
            return False
        except RetryLater:
            self.expected_jobs.pop(key, None)
            raise
        except Exception as e:
            self.expected_jobs.pop(key, None)
            if not self.earlier_failures(key):
                post_event(ftj, "Warning", "CreateFailed", f"creating the trainer's objects failed (retrying): {e}")
            raise CreateFailed(str(e)) from e
        finally:
            self.creating -= 1
            self._slots.release()
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

    async def usable_claim(self, key: Key, spec: FineTuneJobSpec) -> list[str] | None:
        """The output claim's access modes where they matter; Refused when the run cannot use it."""
        modes = await read_access_modes(self.client, key[0], spec)
        refused = claim_refusal(spec, modes)
        if refused is not None:
            raise Refused(refused)
        return modes

    async def ensure_prerequisites(
        self, ftj: dict[str, Any], spec: FineTuneJobSpec | None = None, modes: list[str] | None = None
    ) -> None:
        """The ConfigMap, ServiceAccount and RoleBinding the trainer pods need, and on several nodes
        their headless Service (created at once). ``modes``: the output claim's access modes, read
        here when not given (a re-created ConfigMap says what the first one said)."""
        spec = spec or builders.parse_spec(ftj)
        if modes is None:
            modes = await read_access_modes(self.client, ftj["metadata"]["namespace"], spec)
        objs = builders.pod_prerequisites(ftj, spec, self.cfg, modes)
        await asyncio.gather(*(self.create_owned(ftj, o) for o in objs))

    def prerequisites_due(
        self, key: Key, job: dict[str, Any], pod: dict[str, Any] | None, stored: dict[str, Any]
    ) -> bool:
        """Whether a running Job looks like it lost its ConfigMap, ServiceAccount or RoleBinding
        (deleted by someone): its pod cannot get its config, the Job has had no pod for a while, or
        the running trainer's progress reports stopped arriving (its RoleBinding is gone)."""
        if time.monotonic() - self.prerequisites_checked.get(key, -1e9) < PREREQUISITES_CHECK:
            return False
        created = parse_time(job["metadata"].get("creationTimestamp"))
        podless = (
            pod is None
            and not job_finished(job)
            and not (job.get("spec") or {}).get("suspend")
            and created is not None
            and time.time() - created.timestamp() > POD_EXPECTED_WITHIN
        )
        if self._progress_stale(pod, stored) or waiting_state(pod).get("reason") in CONFIG_ERROR_REASONS or podless:
            self.prerequisites_checked[key] = time.monotonic()
            return True
        return False

    def _progress_stale(self, pod: dict[str, Any] | None, stored: dict[str, Any]) -> bool:
        """A trainer running for a while whose last progress report is older than three intervals."""
        if not self.cfg.status_patch or pod is None or ((pod.get("status") or {}).get("phase")) != "Running":
            return False
        now = time.time()
        limit = 3 * self.cfg.status_patch_interval_seconds + POD_EXPECTED_WITHIN
        started = parse_time((pod.get("status") or {}).get("startTime"))
        updated = parse_time((stored.get("progress") or {}).get("updatedAt"))
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
            await self.client.create(path, pod, params={"dryRun": "All", "fieldValidation": "Strict"})
        except ApiError as e:
            blocked = refusal(e.status, e.message or "", "the trainer pod")
            if blocked is None:
                raise
            raise Refused(blocked) from e

    async def create_owned(self, ftj: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``; if it exists, accept it only when this FineTuneJob created it."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        path = collection_path(obj["apiVersion"], kind, obj["metadata"]["namespace"])
        try:
            # Strict: a field the API server does not know is an error, never silently dropped
            return await self.client.create(path, obj, params={"fieldValidation": "Strict"})
        except ApiError as e:
            if e.status != 409:
                blocked = refusal(e.status, e.message or "", f"{kind} {name}")
                if blocked is None:
                    raise
                raise Refused(blocked) from e
        existing = await self.client.get(object_path(obj))
        _check_owner(ftj, obj, existing)
        return existing


def _check_owner(ftj: dict[str, Any], obj: dict[str, Any], existing: dict[str, Any]) -> None:
    """An existing object of a child's name is this run's (a restart), an earlier run's of the same
    name (wait for the garbage collector) or somebody else's (NameConflict)."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    owner = next(
        (o for o in (existing.get("metadata") or {}).get("ownerReferences") or [] if o.get("controller")), None
    )
    if owner is not None and owner.get("uid") == ftj["metadata"]["uid"]:
        return
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
