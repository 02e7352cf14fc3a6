"""The I/O layer against a fake API client: idempotent creation, adoption, status writes only on change."""

import asyncio
import copy

import pytest

from finetune_operator import builders
from finetune_operator.handlers import Operator, RetryLater, key_of
from finetune_operator.kube import ApiError


class FakeClient:
    def __init__(self):
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []

    async def create(self, path, body):
        self.calls.append(("POST", path))
        full = f"{path}/{body['metadata']['name']}"
        if full in self.objects:
            raise ApiError(409, {"reason": "AlreadyExists", "message": "exists"}, "POST", path)
        self.objects[full] = copy.deepcopy(body)
        return body

    async def get(self, path):
        self.calls.append(("GET", path))
        if path not in self.objects:
            raise ApiError(404, {"reason": "NotFound"}, "GET", path)
        return copy.deepcopy(self.objects[path])

    async def merge_patch(self, path, body):
        self.calls.append(("PATCH", path))
        return body


def run(coro):
    return asyncio.run(coro)


def make_op(cfg, indices):
    op = Operator(cfg, FakeClient())
    op.indices = indices
    return op


def test_ensure_creates_children_once(ftj, cfg):
    async def go():
        op = make_op(cfg, {"ftj_index": {}, "job_index": {}, "pod_index": {}})
        assert await op.ensure_children(ftj) is True
        posts = [p for m, p in op.client.calls if m == "POST"]
        assert len(posts) == 3 and posts[2].endswith("/jobs")  # ConfigMap, ServiceAccount, then the Job
        assert key_of("team-a", "demo") in op.rbac_todo  # the trainer's Role/RoleBinding next
        # a restart before the watch delivered the Job: 409 -> read, no second Job
        op2 = make_op(cfg, {"ftj_index": {}, "job_index": {}, "pod_index": {}})
        op2.client = op.client
        assert await op2.ensure_children(ftj) is True
        assert await op2.ensure_children(ftj) is False  # created, waiting for the watch
        jobs = [k for k in op.client.objects if "/jobs/" in k]
        assert jobs == ["/apis/batch/v1/namespaces/team-a/jobs/demo-trainer"]
        for t in list(op._timers.values()) + list(op2._timers.values()):
            t.cancel()
    run(go())


def test_ensure_skips_when_job_indexed_or_recorded(ftj, cfg):
    async def go():
        key = key_of("team-a", "demo")
        op = make_op(cfg, {"job_index": {key: [{"metadata": {"name": "demo-trainer"}}]}})
        assert await op.ensure_children(ftj) is False
        assert op.client.calls == []
        op = make_op(cfg, {"job_index": {}})
        assert not await op.ensure_children({**ftj, "status": {"jobName": "demo-trainer", "phase": "Running"}})
        assert op.client.calls == []  # JobDeleted, not recreated
        assert not await op.ensure_children({**ftj, "status": {"phase": "Succeeded"}})
        bad = {**ftj, "spec": {**ftj["spec"], "training": {"epochs": 1, "maxSteps": 2}}}
        assert not await op.ensure_children(bad)  # InvalidSpec: permanent
        assert op.client.calls == []
        for t in op._timers.values():
            t.cancel()
    run(go())


def test_adopts_orphan_and_refuses_foreign(ftj, cfg):
    async def go():
        op = make_op(cfg, {"job_index": {}})
        spec = builders.parse_spec(ftj)
        cm = builders.config_map(ftj, spec, cfg)
        orphan = copy.deepcopy(cm)
        orphan["metadata"].pop("ownerReferences")
        path = "/api/v1/namespaces/team-a/configmaps/demo-config"
        op.client.objects[path] = orphan
        await op._create_or_adopt(ftj, cm)
        assert ("PATCH", path) in op.client.calls
        foreign = copy.deepcopy(cm)
        foreign["metadata"]["ownerReferences"][0]["uid"] = "other"
        op.client.objects[path] = foreign
        with pytest.raises(RetryLater):
            await op._create_or_adopt(ftj, cm)
    run(go())


def test_reconcile_creates_then_reports(ftj, cfg):
    async def go():
        key = key_of("team-a", "demo")
        op = make_op(cfg, {"ftj_index": {key: [copy.deepcopy(ftj)]}, "job_index": {}, "pod_index": {}})
        await op.reconcile(key)
        assert [m for m, _ in op.client.calls].count("POST") == 3
        assert "PATCH" not in [m for m, _ in op.client.calls]  # status once the Job is seen
        await op.reconcile(key)  # the next pass (the watch has not delivered the Job yet): RBAC
        posts = [p.rsplit("/", 1)[1] for m, p in op.client.calls if m == "POST"]
        assert posts[3:] == ["roles", "rolebindings"] and key in op.rbac_done
        await op.reconcile(key)
        assert len([1 for m, _ in op.client.calls if m == "POST"]) == 5  # once
        for t in op._timers.values():
            t.cancel()
    run(go())


def test_status_written_only_when_changed(ftj, cfg):
    async def go():
        key = key_of("team-a", "demo")
        stored = copy.deepcopy(ftj)
        job = {"metadata": {"name": "demo-trainer"}, "spec": {"suspend": False}, "status": {}}
        op = make_op(cfg, {"ftj_index": {key: [stored]}, "job_index": {key: [job]}, "pod_index": {}})
        await op.reconcile(key)
        patches = [p for m, p in op.client.calls if m == "PATCH"]
        assert patches == ["/apis/finetune.dev/v1alpha1/namespaces/team-a/finetunejobs/demo/status"]
        await op.reconcile(key)  # nothing changed (the watch has not even delivered our write)
        assert len([1 for m, _ in op.client.calls if m == "PATCH"]) == 1
        for t in op._timers.values():
            t.cancel()
    run(go())


def test_suspend_converges(ftj, cfg):
    async def go():
        key = key_of("team-a", "demo")
        ftj["spec"]["suspend"] = True
        job = {"metadata": {"name": "demo-trainer"}, "spec": {"suspend": False}, "status": {}}
        op = make_op(cfg, {"ftj_index": {key: [ftj]}, "job_index": {key: [job]}, "pod_index": {}})
        await op.reconcile(key)
        assert ("PATCH", "/apis/batch/v1/namespaces/team-a/jobs/demo-trainer") in op.client.calls
        for t in op._timers.values():
            t.cancel()
    run(go())


def test_rbac_waits_behind_new_jobs_in_a_burst(ftj, cfg):
    async def go():
        key = key_of("team-a", "demo")
        op = make_op(cfg, {"ftj_index": {key: [copy.deepcopy(ftj)]}, "job_index": {}, "pod_index": {}})
        assert await op.ensure_children(ftj)
        op.creating = 3  # other runs' children are being created
        await op.ensure_rbac(key, ftj)
        assert not [p for m, p in op.client.calls if m == "POST" and "/roles" in p]
        assert key in op._timers  # retried shortly
        op.rbac_todo[key] -= 60  # waited long enough: no starving behind a stream of new runs
        await op.ensure_rbac(key, ftj)
        assert [p.rsplit("/", 1)[1] for m, p in op.client.calls if m == "POST"][-2:] == ["roles", "rolebindings"]
        for t in op._timers.values():
            t.cancel()
    run(go())


def test_restart_reasserts_rbac_of_running_runs(ftj, cfg):
    """An operator killed between creating the Job and the Role/RoleBinding: the next process
    creates them for runs whose pod exists (once), not for final or pod-less ones."""
    async def go():
        key = key_of("team-a", "demo")
        job = {"metadata": {"name": "demo-trainer"}, "spec": {"suspend": False}, "status": {"active": 1}}
        pod = {"metadata": {"name": "demo-trainer-abc", "creationTimestamp": "2025-01-01T00:00:00Z",
                            "labels": {"job-name": "demo-trainer"}},
               "spec": {"nodeName": "gpu-a100-0"}, "status": {"phase": "Running"}}
        stored = {**copy.deepcopy(ftj), "status": {"phase": "Running", "jobName": "demo-trainer"}}
        op = make_op(cfg, {"ftj_index": {key: [stored]}, "job_index": {key: [job]}, "pod_index": {key: [pod]}})
        await op.reconcile(key)
        posts = [p.rsplit("/", 1)[1] for m, p in op.client.calls if m == "POST"]
        assert posts == ["roles", "rolebindings"]
        await op.reconcile(key)
        assert len([1 for m, _ in op.client.calls if m == "POST"]) == 2
        # a suspended run without a pod, or a final one: nothing
        op = make_op(cfg, {"ftj_index": {key: [stored]}, "job_index": {key: [job]}, "pod_index": {}})
        await op.reconcile(key)
        assert not [1 for m, _ in op.client.calls if m == "POST"]
        for t in op._timers.values():
            t.cancel()
    run(go())


def test_rbac_failure_does_not_block_the_status(ftj, cfg):
    async def go():
        key = key_of("team-a", "demo")
        job = {"metadata": {"name": "demo-trainer"}, "spec": {"suspend": False}, "status": {}}
        op = make_op(cfg, {"ftj_index": {key: [copy.deepcopy(ftj)]}, "job_index": {key: [job]}, "pod_index": {}})
        op.rbac_todo[key] = 0.0
        create = op.client.create

        async def refuse_roles(path, body):
            if "/roles" in path or "/rolebindings" in path:
                raise ApiError(403, {"reason": "Forbidden", "message": "no"}, "POST", path)
            return await create(path, body)
        op.client.create = refuse_roles
        with pytest.raises(ApiError):
            await op.reconcile(key)
        assert [p for m, p in op.client.calls if m == "PATCH" and p.endswith("/status")]  # reported anyway
        assert key in op.rbac_todo and key not in op.rbac_done  # and retried
        for t in op._timers.values():
            t.cancel()
    run(go())
