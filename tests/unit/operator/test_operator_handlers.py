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
        assert len(posts) == 5 and [p.rsplit("/", 1)[1] for p in posts[2:]] == ["jobs", "roles", "rolebindings"]
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
        assert [m for m, _ in op.client.calls].count("POST") == 5
        assert "PATCH" not in [m for m, _ in op.client.calls]  # status once the Job is seen
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
