"""The reconciler against an in-memory API client: what it creates, patches and deletes, with which
bodies; it never takes over objects it did not create; refusals become a status."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from finetune_operator import builders
from finetune_operator.kube import ApiError
from finetune_operator.reconciler import Reconciler
from finetune_operator.summaries import job_summary as summarize_job
from finetune_operator.summaries import pod_summary
from finetune_operator.workqueue import RetryLater

KEY = ("team-a", "demo")
FTJ_PATH = "/apis/finetune.dev/v1alpha1/namespaces/team-a/finetunejobs/demo"
JOB_PATH = "/apis/batch/v1/namespaces/team-a/jobs/demo-trainer"


class FakeClient:
    """Objects by path; every request recorded with its body; ``refuse[(method, path)]`` answers an error."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.refuse: dict[tuple[str, str], ApiError] = {}

    def _check(self, method: str, path: str, body: Any = None) -> None:
        self.calls.append((method, path, copy.deepcopy(body)))
        error = self.refuse.get((method, path))
        if error is not None:
            raise error

    async def create(self, path: str, body: dict[str, Any], params: dict[str, str] | None = None) -> dict[str, Any]:
        dry_run = bool((params or {}).get("dryRun"))
        self._check("POST", path + ("?dryRun" if dry_run else ""), body)
        if dry_run:
            return body
        full = f"{path}/{body['metadata']['name']}"
        if full in self.objects:
            raise ApiError(409, {"reason": "AlreadyExists", "message": "exists"}, "POST", path)
        self.objects[full] = copy.deepcopy(body)
        return body

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        self._check("GET", path)
        if params is not None and path not in self.objects:  # a list request
            return {"items": []}
        if path not in self.objects:
            raise ApiError(404, {"reason": "NotFound", "message": "not found"}, "GET", path)
        return copy.deepcopy(self.objects[path])

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check("PATCH", path, body)
        return body

    async def delete(self, path: str, body: Any = None) -> dict[str, Any]:
        self._check("DELETE", path, body)
        self.objects.pop(path, None)
        return {}

    def posts(self) -> list[str]:
        return [p for m, p, _ in self.calls if m == "POST"]

    def patches(self, path: str) -> list[Any]:
        return [b for m, p, b in self.calls if m == "PATCH" and p == path]


def run(coro: Any) -> Any:
    async def with_loop() -> Any:
        try:
            return await coro
        finally:  # pending re-runs of the work queue are not this test's business
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

    return asyncio.run(with_loop())


def reconciler(
    cfg: Any, ftj: dict[str, Any], jobs: list[dict] = (), pods: list[dict] = (), client: FakeClient | None = None
) -> Reconciler:
    r = Reconciler(cfg, client or FakeClient())  # type: ignore[arg-type]
    r.views.update({KEY: [copy.deepcopy(ftj)]}, {KEY: list(jobs)}, {KEY: list(pods)})
    return r


async def create_children(r: Reconciler) -> bool:
    """What ``reconcile`` does first for a run without a Job."""
    ftj = r.views.ftj(KEY)
    return await r.children.ensure_children(KEY, ftj, r.status.recorded(KEY, ftj))


def job_summary(uid: str = "1111-2222", **status: Any) -> dict[str, Any]:
    job = {
        "metadata": {
            "name": "demo-trainer",
            "namespace": "team-a",
            "uid": "job-uid",
            "ownerReferences": [{"kind": "FineTuneJob", "name": "demo", "uid": uid, "controller": True}],
        },
        "spec": {"suspend": False},
        "status": status,
    }
    return summarize_job(job)


def test_creates_the_children_once_and_the_job_last(ftj, cfg):
    async def go() -> None:
        r = reconciler(cfg, ftj)
        assert await create_children(r) is True
        posts = r.client.posts()
        assert sorted(p.rsplit("/", 1)[1] for p in posts[:3]) == ["configmaps", "rolebindings", "serviceaccounts"]
        assert posts[3:] == ["/api/v1/namespaces/team-a/pods?dryRun", "/apis/batch/v1/namespaces/team-a/jobs"]
        binding = r.client.objects["/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/demo-trainer"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cfg.trainer_cluster_role,
        }
        # a restart before the watch delivered the Job: 409 on each, each is this run's -> no second Job
        again = reconciler(cfg, ftj, client=r.client)
        assert await create_children(again) is True
        assert await create_children(again) is False  # created, waiting for the watch
        assert [k for k in r.client.objects if "/jobs/" in k] == [JOB_PATH]

    run(go())


def test_no_children_when_the_job_exists_was_created_before_or_the_run_ended(ftj, cfg):
    async def go() -> None:
        for stored_status in ({"jobName": "demo-trainer", "phase": "Running"}, {"phase": "Succeeded"}):
            r = reconciler(cfg, {**ftj, "status": stored_status})
            assert not await create_children(r)
            assert r.client.calls == []
        invalid = {**ftj, "spec": {**ftj["spec"], "training": {"epochs": 1, "maxSteps": 2}}}
        r = reconciler(cfg, invalid)
        assert not await create_children(r)
        assert r.client.calls == []

    run(go())


def test_an_existing_object_it_did_not_create_is_a_name_conflict_never_adopted(ftj, cfg):
    async def go() -> None:
        r = reconciler(cfg, ftj)
        foreign_sa = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "demo-trainer", "namespace": "team-a"},
        }
        sa_path = "/api/v1/namespaces/team-a/serviceaccounts/demo-trainer"
        r.client.objects[sa_path] = foreign_sa
        await r.reconcile(KEY)
        assert not [p for p in r.client.posts() if p.endswith("/jobs")]  # no Job runs as that account
        assert r.client.objects[sa_path] == foreign_sa and not r.client.patches(sa_path)  # untouched
        (written,) = r.client.patches(FTJ_PATH + "/status")
        assert written["status"]["phase"] == "Failed" and written["status"]["reason"] == "NameConflict"
        assert "ServiceAccount demo-trainer already exists" in written["status"]["message"]

    run(go())


def test_an_object_left_by_an_earlier_finetunejob_of_that_name_is_waited_for(ftj, cfg):
    async def go() -> None:
        r = reconciler(cfg, ftj)
        spec = builders.parse_spec(ftj)
        old = builders.config_map({**ftj, "metadata": {**ftj["metadata"], "uid": "old-uid"}}, spec, cfg)
        r.client.objects["/api/v1/namespaces/team-a/configmaps/demo-config"] = old
        with pytest.raises(RetryLater, match="earlier FineTuneJob of this name"):
            await create_children(r)
        assert not [p for p in r.client.posts() if p.endswith("/jobs")]

    run(go())


def test_a_job_with_our_labels_but_another_owner_is_not_this_runs_job(ftj, cfg):
    r = reconciler(
        cfg, ftj, jobs=[job_summary(uid="someone-else", conditions=[{"type": "Complete", "status": "True"}])]
    )
    assert r.views.job(KEY, ftj["metadata"]["uid"]) is None
    assert r.views.job(KEY, "someone-else") is not None


def test_status_is_written_only_when_it_changes(ftj, cfg):
    async def go() -> None:
        r = reconciler(cfg, ftj, jobs=[job_summary()])
        await r.reconcile(KEY)
        (patch,) = r.client.patches(FTJ_PATH + "/status")
        assert patch["status"]["phase"] == "Pending" and patch["status"]["jobName"] == "demo-trainer"
        await r.reconcile(KEY)  # nothing changed (the watch has not even delivered our write)
        assert len(r.client.patches(FTJ_PATH + "/status")) == 1

    run(go())


def test_suspend_follows_the_finetunejob_with_the_jobs_uid_as_precondition(ftj, cfg):
    async def go() -> None:
        ftj["spec"]["suspend"] = True
        r = reconciler(cfg, ftj, jobs=[job_summary()])
        await r.reconcile(KEY)
        assert r.client.patches(JOB_PATH) == [{"metadata": {"uid": "job-uid"}, "spec": {"suspend": True}}]

    run(go())


def test_the_ttl_reaches_the_job_only_after_the_result_is_recorded(ftj, cfg):
    async def go() -> None:
        ftj["spec"]["ttlSecondsAfterFinished"] = 0
        running = reconciler(cfg, ftj, jobs=[job_summary(active=1)])
        await running.reconcile(KEY)
        assert running.client.patches(JOB_PATH) == []
        done = {**ftj, "status": {"phase": "Failed", "reason": "TrainerError", "jobName": "demo-trainer"}}
        finished = reconciler(cfg, done, jobs=[job_summary(conditions=[{"type": "Failed", "status": "True"}])])
        await finished.reconcile(KEY)
        assert finished.client.patches(JOB_PATH) == [
            {"metadata": {"uid": "job-uid"}, "spec": {"ttlSecondsAfterFinished": 0}}
        ]

    run(go())


@pytest.mark.parametrize(
    "where, code, message, phase, reason",
    [
        (
            "POST /api/v1/namespaces/team-a/pods?dryRun",
            403,
            'pods "demo-trainer-x" is forbidden: violates PodSecurity "restricted:latest": hostPath volumes',
            "Failed",
            "PodRejected",
        ),
        (
            "POST /api/v1/namespaces/team-a/pods?dryRun",
            403,
            'pods "demo-trainer-x" is forbidden: no PriorityClass with name urgent was found',
            "Failed",
            "PodRejected",
        ),
        (
            "POST /apis/batch/v1/namespaces/team-a/jobs",
            422,
            'Job.batch "demo-trainer" is invalid: spec.template.spec.affinity: Invalid value',
            "Failed",
            "InvalidSpec",
        ),
        (
            "POST /apis/batch/v1/namespaces/team-a/jobs",
            403,
            'jobs.batch is forbidden: User "system:serviceaccount:x:op" cannot create resource "jobs"',
            "Pending",
            "NotPermitted",
        ),
        (
            "POST /apis/batch/v1/namespaces/team-a/jobs",
            403,
            'jobs.batch "demo-trainer" is forbidden: exceeded quota: gpus',
            "Pending",
            "QuotaExceeded",
        ),
    ],
)
def test_refusals_become_a_readable_status(ftj, cfg, where, code, message, phase, reason):
    async def go() -> None:
        r = reconciler(cfg, ftj)
        method, path = where.split(" ")
        r.client.refuse[(method, path)] = ApiError(code, {"reason": "x", "message": message}, method, path)
        await r.reconcile(KEY)
        (written,) = r.client.patches(FTJ_PATH + "/status")
        assert (written["status"]["phase"], written["status"]["reason"]) == (phase, reason)
        assert message.split(": ")[-1] in written["status"]["message"] and "\n" not in written["status"]["message"]
        assert (KEY in r.children.blocked) and r.children.blocked[KEY].final == (phase == "Failed")

    run(go())


def test_output_cleanup_deletes_only_this_runs_job_and_reports_what_was_removed(ftj, cfg):
    async def go() -> None:
        ftj["spec"]["output"]["retention"] = "Delete"
        r = reconciler(cfg, ftj, jobs=[job_summary()])
        cleanup_path = "/apis/batch/v1/namespaces/team-a/jobs/demo-cleanup"
        with pytest.raises(Exception, match="waiting for the output cleanup Job"):
            await r.cleanup_output(copy.deepcopy(ftj), retry=0)
        deletes = [(p, b) for m, p, b in r.client.calls if m == "DELETE"]
        assert deletes == [(JOB_PATH, {"propagationPolicy": "Background", "preconditions": {"uid": "job-uid"}})]
        command = r.client.objects[cleanup_path]["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command == [
            "finetune-train",
            "cleanup",
            "--output",
            "/mnt/pvc/artifacts/team-a/demo",
            "--run-id",
            "1111-2222",
        ]
        r.client.objects[cleanup_path]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
        r.client.objects[cleanup_path]["metadata"]["uid"] = "cleanup-uid"
        r.client.objects["/api/v1/namespaces/team-a/pods"] = {
            "items": [
                {
                    "status": {
                        "containerStatuses": [
                            {
                                "name": "cleanup",
                                "state": {
                                    "terminated": {
                                        "exitCode": 0,
                                        "message": (
                                            '{"outcome": "removed", "message": "removed 7 files of run 1111-2222"}'
                                        ),
                                    }
                                },
                            }
                        ]
                    }
                }
            ]
        }
        assert await r.output._result(r.client.objects[cleanup_path]) == (
            "removed",
            "removed 7 files of run 1111-2222",
        )
        await r.cleanup_output(copy.deepcopy(ftj), retry=1)  # complete: returns

    run(go())


def full_job(uid: str = "1111-2222", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "demo-trainer",
            "namespace": "team-a",
            "uid": "job-uid",
            "labels": {},
            "ownerReferences": [{"kind": "FineTuneJob", "name": "demo", "uid": uid, "controller": True}],
        },
        "spec": {"suspend": False},
        "status": status,
    }


def test_a_job_whose_labels_were_removed_is_found_relabelled_and_not_called_deleted(ftj, cfg):
    async def go() -> None:
        r = reconciler(cfg, {**ftj, "status": {"phase": "Running", "jobName": "demo-trainer"}})
        r.client.objects[JOB_PATH] = full_job(active=1)
        await r.reconcile(KEY)
        (relabel,) = r.client.patches(JOB_PATH)
        assert relabel["metadata"]["uid"] == "job-uid"
        assert relabel["metadata"]["labels"]["finetune.dev/finetunejob"] == "demo"
        written = r.client.patches(FTJ_PATH + "/status")
        # the Job is found again: the run waits for its pod (no pod in the index here), not JobDeleted
        assert [w["status"]["reason"] for w in written] == ["WaitingForPod"]
        # someone else's Job of that name is not ours: the run's Job is gone
        r = reconciler(cfg, {**ftj, "status": {"phase": "Running", "jobName": "demo-trainer"}})
        r.client.objects[JOB_PATH] = full_job(uid="someone-else", active=1)
        await r.reconcile(KEY)
        assert r.client.patches(JOB_PATH) == []
        assert r.client.patches(FTJ_PATH + "/status")[-1]["status"]["reason"] == "JobDeleted"

    run(go())


def test_a_finished_jobs_pod_is_looked_up_when_its_labels_were_removed(ftj, cfg):
    async def go() -> None:
        done = job_summary(conditions=[{"type": "Complete", "status": "True"}])
        r = reconciler(cfg, ftj, jobs=[done])
        r.client.objects["/api/v1/namespaces/team-a/pods"] = {
            "items": [
                {
                    "metadata": {
                        "name": "demo-trainer-x",
                        "uid": "p1",
                        "creationTimestamp": "2025-01-01T00:00:00Z",
                        "ownerReferences": [{"kind": "Job", "uid": "job-uid", "controller": True}],
                    },
                    "status": {
                        "phase": "Succeeded",
                        "containerStatuses": [
                            {
                                "name": "trainer",
                                "state": {
                                    "terminated": {
                                        "exitCode": 0,
                                        "message": '{"outcome": "succeeded", "metrics": {"evalLoss": 0.5}}',
                                    }
                                },
                            }
                        ],
                    },
                }
            ]
        }
        await r.reconcile(KEY)
        (written,) = r.client.patches(FTJ_PATH + "/status")
        assert written["status"]["phase"] == "Succeeded" and written["status"]["metrics"] == {"evalLoss": 0.5}

    run(go())


def test_resuming_a_run_first_recreates_what_it_lost_while_suspended(ftj, cfg):
    async def go() -> None:
        suspended = job_summary()
        suspended["spec"]["suspend"] = True
        r = reconciler(cfg, {**ftj, "status": {"phase": "Suspended", "jobName": "demo-trainer"}}, jobs=[suspended])
        await r.reconcile(KEY)
        posts = r.client.posts()
        assert sorted(p.rsplit("/", 1)[1] for p in posts) == ["configmaps", "rolebindings", "serviceaccounts"]
        assert r.client.patches(JOB_PATH) == [{"metadata": {"uid": "job-uid"}, "spec": {"suspend": False}}]
        order = [m + " " + p for m, p, _ in r.client.calls if m in ("POST", "PATCH") and "/status" not in p]
        assert order[-1] == f"PATCH {JOB_PATH}"  # unsuspended after the prerequisites exist

    run(go())


def test_a_trainer_whose_progress_stopped_arriving_gets_its_rolebinding_back(ftj, cfg):
    async def go() -> None:
        long_ago = "2025-01-01T00:00:00Z"
        pod = pod_summary(
            {
                "metadata": {
                    "name": "demo-trainer-x",
                    "uid": "p1",
                    "creationTimestamp": long_ago,
                    "ownerReferences": [{"kind": "Job", "uid": "job-uid", "controller": True}],
                },
                "spec": {"nodeName": "n"},
                "status": {"phase": "Running", "startTime": long_ago},
            }
        )
        stored = {"phase": "Running", "jobName": "demo-trainer", "progress": {"step": 3, "updatedAt": long_ago}}
        r = reconciler(cfg, {**ftj, "status": stored}, jobs=[job_summary(active=1)], pods=[pod])
        await r.reconcile(KEY)
        assert "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings" in r.client.posts()

    run(go())
