"""The download step before a run's trainer Job: its fetch Job (``fetchjob.fetch_job``).

``observe`` gathers what the status needs (the run's downloads, its fetch Job and pod from the
views); ``ensure`` creates the fetch Job (after the run's ServiceAccount, RoleBinding and
ConfigMap, which the fetch pod's token check needs) and says whether every download is done, so
the trainer Job is created only after they all succeeded; ``stop`` deletes a fetch Job still
running once the run has failed for good (a missing Secret keeps its pod waiting forever).

Concurrent runs of the same source wait for one download: each run has its own fetch Job (named
``<name>-fetch``, owned by its FineTuneJob, running as its own ServiceAccount), and the fetch
command's lock on the shared destination lets one of them download while the others wait and then
reuse the verified entry (``cached: true`` in their status). The operator never touches another
run's fetch Job: an existing Job of that name it did not create for this FineTuneJob is a
NameConflict (``children.ChildCreator.create_owned``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from finetune_api.protocol import FailureReason
from finetune_api.runconfig import fetch_plans

from . import builders
from .children import JOB_EXPECTED_FOR, ChildCreator, NameConflict, Refused
from .config import OperatorConfig
from .fetchjob import fetch_job
from .jobcontrol import JobControl
from .kube import ApiError, KubeClient, object_path
from .refusals import ChildrenBlocked
from .runstatus import FetchSeen, is_final
from .summaries import job_finished, latest_pod, true_conditions
from .views import Key, Views

logger = logging.getLogger("finetune_operator")


class SourceFetches:
    def __init__(self, cfg: OperatorConfig, client: KubeClient, views: Views, children: ChildCreator, jobs: JobControl):
        self.cfg, self.client, self.views, self.children, self.jobs = cfg, client, views, children, jobs
        self.expected: dict[Key, tuple[str, float]] = {}  # created, not yet in the view: (ftj uid, when)

    def forget(self, key: Key) -> None:
        self.expected.pop(key, None)

    async def observe(self, key: Key, ftj: dict[str, Any]) -> FetchSeen | None:
        """The run's downloads with its fetch Job and latest pod; None when it downloads nothing."""
        try:
            spec = builders.parse_spec(ftj)
        except builders.InvalidSpec:
            return None
        plans = fetch_plans(spec, builders.cached_models(self.cfg))
        if not plans:
            return None
        job = self.views.fetch_job(key, ftj["metadata"]["uid"])
        pod = latest_pod(self.views.pods_of(key, job["metadata"]["uid"])) if job else None
        if job is not None:
            self.expected.pop(key, None)
            if pod is None and job_finished(job):
                pod = await self.jobs.find_pod(job)  # its result is in the pod
        return FetchSeen(tuple(plans), job, pod, self.cfg.model_cache_claim)

    def done(self, seen: FetchSeen | None) -> bool:
        """Every download succeeded (or there is none)."""
        if seen is None:
            return True
        conds = true_conditions(seen.job)
        return "Complete" in conds or "SuccessCriteriaMet" in conds

    async def ensure(self, key: Key, ftj: dict[str, Any], recorded: dict[str, Any], seen: FetchSeen) -> None:
        """Create the fetch Job of a live run that has none (refusals kept in ``children.blocked``)."""
        uid = ftj["metadata"]["uid"]
        expected = self.expected.get(key)
        if expected is not None and expected[0] == uid and time.monotonic() - expected[1] < JOB_EXPECTED_FOR:
            return
        blocked = self.children.blocked.get(key)
        if (
            seen.job is not None
            or ftj["metadata"].get("deletionTimestamp")
            or is_final(recorded.get("phase"))
            or (blocked and blocked.final)
        ):
            return
        spec = builders.parse_spec(ftj)
        manifest = fetch_job(ftj, spec, self.cfg)
        if manifest is None:
            return
        try:
            modes = await self.children.usable_claim(key, spec)  # refused before anything is created
            await self.children.ensure_prerequisites(ftj, spec, modes)
            self.expected[key] = (uid, time.monotonic())
            await self.children.create_owned(ftj, manifest)
        except (NameConflict, Refused) as e:
            self.expected.pop(key, None)
            self.children.blocked[key] = (
                e.blocked
                if isinstance(e, Refused)
                else ChildrenBlocked(FailureReason.NAME_CONFLICT, str(e), final=True)
            )
            return
        except BaseException:
            self.expected.pop(key, None)
            raise
        self.children.blocked.pop(key, None)
        logger.info("%s/%s: created Job %s", key[0], key[1], manifest["metadata"]["name"])

    async def stop(self, seen: FetchSeen | None) -> None:
        """Delete a fetch Job whose pod still runs (or waits) after its run failed: another download
        of the run, or a container waiting for a Secret that does not exist. Its fetches remove their
        temporary directories on SIGTERM. A pod that ended is left to the Job controller (and the
        Job's TTL), for `kubectl logs`."""
        if seen is None or seen.job is None or job_finished(seen.job):
            return
        if ((seen.pod or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        meta = seen.job["metadata"]
        try:
            await self.client.delete(
                object_path({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta}),
                {"propagationPolicy": "Background", "preconditions": {"uid": meta["uid"]}},
            )
        except ApiError as e:
            if e.status not in (404, 409):
                raise
