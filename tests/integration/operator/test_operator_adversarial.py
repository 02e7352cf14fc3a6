"""The adversarial corpus (issues 9 and 16), operator side: what a tenant with `edit` (or an admin)
does to a run's children while it runs, names that collide with objects the operator did not
create, valid edge cases, and the operator killed while runs are created, resumed or cleaned up.
The operator is a real subprocess under the chart's RBAC rules; kwok simulates the trainer pods.
Each case asserts its verdict: refused, no result lost, nothing adopted or created."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from support.operator import (
    SIMULATED,
    Env,
    Ftj,
    assert_never_forbidden,
    launch_operator,
    make_namespace,
    minimal_ftj,
    sim,
    summary_json,
)

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(240)]
FINAL = ("Succeeded", "Failed")


def result(loss: float) -> str:
    return summary_json(outcome="succeeded", metrics={"evalLoss": loss})


def run(name: str, loss: float = 1.0, duration: str = "1s", **spec: Any) -> dict[str, Any]:
    """A simulated run that ends Succeeded with evalLoss ``loss`` after ``duration``."""
    return minimal_ftj(name, podAnnotations=sim(duration=duration, termination_message=result(loss)), **spec)


@pytest.fixture(scope="module")
def env(
    cluster: Any, kubectl: Any, kube_api: client.ApiClient, crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    """One namespace and operator for the cases that leave the operator running."""
    ns = make_namespace(kubectl, "adversarial")
    op = launch_operator(cluster, kubectl, ns, tmp_path_factory.mktemp("adversarial"))
    op.wait_ready()
    yield Env(ns, Ftj(client.CustomObjectsApi(kube_api), kube_api, ns), op)
    code = op.stop()
    print(f"--- operator log (exit {code})\n{op.logs()[-6000:]}")
    kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert_never_forbidden(op)


def status(ftjs: Ftj, wait_for: Any, name: str, *phases: str, reason: str | None = None, timeout: float = 90) -> Any:
    def check() -> dict[str, Any] | None:
        s = ftjs.status(name)
        return s if s.get("phase") in phases and (reason is None or s.get("reason") == reason) else None

    return wait_for(
        check, timeout=timeout, namespace=ftjs.namespace, description=f"{name} {phases}/{reason}",
        objects=("finetunejobs", "jobs", "pods"),
    )  # fmt: skip


def owner_uids(obj: Any) -> list[str]:
    return [ref.uid for ref in obj.metadata.owner_references or []]


# --- spec changes and children changed behind the run's back --------------------------------------


def test_suspending_a_finished_run_changes_nothing(env: Env, wait_for: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(run("finished", loss=0.42))
    status(ftjs, wait_for, "finished", "Succeeded")
    ftjs.patch("finished", {"spec": {"suspend": True}})
    s = wait_for(lambda: (st := ftjs.status("finished")).get("observedGeneration") == 2 and st, 30, namespace=env.ns)
    assert (s["phase"], s["metrics"]) == ("Succeeded", {"evalLoss": 0.42}), s


def test_a_ttl_lowered_to_zero_while_running_keeps_the_result(env: Env, wait_for: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(run("ttl-lowered", loss=0.32, duration="8s", ttlSecondsAfterFinished=3600))
    status(ftjs, wait_for, "ttl-lowered", "Running")
    ftjs.patch("ttl-lowered", {"spec": {"ttlSecondsAfterFinished": 0}})
    s = status(ftjs, wait_for, "ttl-lowered", *FINAL)
    assert (s["phase"], s.get("metrics")) == ("Succeeded", {"evalLoss": 0.32}), s
    wait_for(lambda: not ftjs.jobs("ttl-lowered"), 60, "the Job removed by its TTL", env.ns)
    assert ftjs.status("ttl-lowered")["metrics"] == {"evalLoss": 0.32}


def test_a_config_map_deleted_mid_run_does_not_stop_it(env: Env, wait_for: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(run("cm-deleted", loss=0.5, duration="6s"))
    status(ftjs, wait_for, "cm-deleted", "Running")
    ftjs.core.delete_namespaced_config_map("cm-deleted-config", env.ns)
    s = status(ftjs, wait_for, "cm-deleted", *FINAL)
    assert (s["phase"], s.get("metrics")) == ("Succeeded", {"evalLoss": 0.5}), s


def test_the_runs_config_map_cannot_be_changed(env: Env, wait_for: Any, kubectl: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(run("cm-patched", suspend=True))
    wait_for(lambda: ftjs.jobs("cm-patched"), 30, "the suspended Job", env.ns)
    before = ftjs.core.read_namespaced_config_map("cm-patched-config", env.ns).data
    patch = json.dumps({"data": {"config.json": "{}"}})
    done = kubectl(
        "patch", "configmap", "cm-patched-config", "--type=merge", "-p", patch, namespace=env.ns, check=False
    )
    assert done.returncode != 0 and "field is immutable when `immutable` is set" in done.stderr, done.stderr
    assert ftjs.core.read_namespaced_config_map("cm-patched-config", env.ns).data == before


def test_a_job_suspended_behind_the_runs_back_is_resumed(env: Env, wait_for: Any, kubectl: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(run("job-suspended", loss=0.7, duration="6s"))
    status(ftjs, wait_for, "job-suspended", "Running")
    kubectl(
        "patch", "job", "job-suspended-trainer", "--type=merge", "-p", '{"spec":{"suspend":true}}', namespace=env.ns
    )
    s = status(ftjs, wait_for, "job-suspended", *FINAL)
    assert (s["phase"], s.get("metrics")) == ("Succeeded", {"evalLoss": 0.7}), s
    assert len(ftjs.jobs("job-suspended")) == 1


def test_a_job_ttl_zeroed_behind_the_runs_back_is_reported_truthfully(env: Env, wait_for: Any, kubectl: Any) -> None:
    """Someone with `edit` sets the running Job's ttlSecondsAfterFinished to 0: the TTL controller may
    remove the Job (and its pod, with the completion record) before the operator reads it. The
    operator sets the TTL itself only once the result is recorded; here the status says what
    happened rather than inventing a result (the adapter stays on the claim)."""
    ftjs = env.ftjs
    ftjs.create(run("job-ttl", loss=0.8, duration="6s"))
    status(ftjs, wait_for, "job-ttl", "Running")
    patch = '{"spec":{"ttlSecondsAfterFinished":0}}'
    kubectl("patch", "job", "job-ttl-trainer", "--type=merge", "-p", patch, namespace=env.ns)
    s = status(ftjs, wait_for, "job-ttl", *FINAL)
    if s["phase"] == "Succeeded":  # the operator read the record before the Job went away
        assert s["metrics"] == {"evalLoss": 0.8}, s
    else:
        assert (s["reason"], "metrics" in s) == ("JobDeleted", False), s
        assert s["message"].startswith("the Job job-ttl-trainer was deleted while the run was running"), s


def test_a_forged_pod_owned_by_the_runs_job_does_not_decide(env: Env, wait_for: Any) -> None:
    """Someone with `edit` creates a pod with the Job's labels, a controller reference to it and a
    succeeded summary while the run's own pod is about to fail: the run's own pod decides."""
    ftjs = env.ftjs
    failed = summary_json(outcome="failed", reason="TrainerError", message="boom")
    ftjs.create(minimal_ftj("forged", podAnnotations=sim(duration="15s", exit_code="1", termination_message=failed)))
    status(ftjs, wait_for, "forged", "Running")
    (job,) = ftjs.jobs("forged")
    labels = {
        "finetune.dev/finetunejob": "forged",
        "app.kubernetes.io/component": "trainer",
        "batch.kubernetes.io/controller-uid": job.metadata.uid,
        "batch.kubernetes.io/job-name": job.metadata.name,
        "controller-uid": job.metadata.uid,
        "job-name": job.metadata.name,
    }
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "uid": job.metadata.uid}
    ftjs.core.create_namespaced_pod(
        env.ns,
        {
            "metadata": {
                "name": "forged-impostor",
                "labels": labels,
                "annotations": sim(duration="1s", termination_message=result(0.001)),
                "ownerReferences": [{**owner, "controller": True}],
            },
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "trainer", "image": "forger"}],
                "affinity": SIMULATED["affinity"],
                "tolerations": [{"operator": "Exists"}],
            },
        },
    )
    s = status(ftjs, wait_for, "forged", *FINAL)
    assert (s["phase"], s["reason"]) == ("Failed", "TrainerError") and "metrics" not in s, s


def test_an_exit_code_that_contradicts_the_summary_fails_the_run(env: Env, wait_for: Any) -> None:
    """A trainer (a custom image) exits 1 but writes a "succeeded" summary: the exit code wins."""
    ftjs = env.ftjs
    ftjs.create(minimal_ftj("contradiction", podAnnotations=sim(exit_code="1", termination_message=result(0.66))))
    s = status(ftjs, wait_for, "contradiction", *FINAL)
    assert s["phase"] == "Failed" and "metrics" not in s, s
    assert not s["message"].lstrip().startswith("{") and "\n" not in s["message"], s["message"]


# --- names that collide with objects the operator did not create ----------------------------------


def test_a_precreated_role_binding_is_a_name_conflict_left_as_it_was(env: Env, wait_for: Any, kubectl: Any) -> None:
    ftjs = env.ftjs
    kubectl("create", "rolebinding", "rb-trainer", "--clusterrole=view", f"--serviceaccount={env.ns}:default",
            namespace=env.ns)  # fmt: skip
    ftjs.create(run("rb"))
    s = status(ftjs, wait_for, "rb", *FINAL)
    assert (s["phase"], s["reason"]) == ("Failed", "NameConflict") and "RoleBinding rb-trainer" in s["message"], s
    binding = client.RbacAuthorizationV1Api(ftjs.kube_api).read_namespaced_role_binding("rb-trainer", env.ns)
    assert binding.role_ref.name == "view" and owner_uids(binding) == []
    assert ftjs.jobs("rb") == []


def test_a_precreated_job_is_a_name_conflict_left_as_it_was(env: Env, wait_for: Any) -> None:
    ftjs = env.ftjs
    container = {"name": "x", "image": "busybox"}
    template = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    ftjs.batch.create_namespaced_job(
        env.ns, {"metadata": {"name": "pj-trainer"}, "spec": {"suspend": True, "template": template}}
    )
    ftjs.create(run("pj"))
    s = status(ftjs, wait_for, "pj", *FINAL)
    assert (s["phase"], s["reason"]) == ("Failed", "NameConflict") and "Job pj-trainer" in s["message"], s
    theirs = ftjs.batch.read_namespaced_job("pj-trainer", env.ns)
    assert theirs.spec.suspend is True and owner_uids(theirs) == []


# --- valid edge cases: they run ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, spec",
    [
        ("e" * 52, {}),
        ("with.dots", {}),
        ("relabel", {"podLabels": {"finetune.dev/finetunejob": "someone-else", "app.kubernetes.io/component": "x"}}),
    ],
    ids=["name-52-characters", "name-with-dots", "pod-labels-cannot-override-the-operators"],
)
def test_valid_edge_cases_run(env: Env, wait_for: Any, name: str, spec: dict[str, Any]) -> None:
    ftjs = env.ftjs
    ftjs.create(run(name, loss=0.25, **spec))
    s = status(ftjs, wait_for, name, *FINAL)
    assert (s["phase"], s.get("metrics")) == ("Succeeded", {"evalLoss": 0.25}), s
    (job,) = ftjs.jobs(name)
    labels = job.spec.template.metadata.labels
    assert labels["finetune.dev/finetunejob"] == name and labels["app.kubernetes.io/component"] == "trainer"


# --- the operator killed -------------------------------------------------------------------------


def all_succeeded(ftjs: Ftj, wait_for: Any, names: list[str], losses: list[float]) -> None:
    """Every run Succeeded with its own metrics and exactly one Job, owned by its own uid."""
    for name, loss in zip(names, losses, strict=True):
        s = status(ftjs, wait_for, name, *FINAL)
        assert (s["phase"], s.get("metrics")) == ("Succeeded", {"evalLoss": loss}), (name, s)
        (job,) = ftjs.jobs(name)
        assert owner_uids(job) == [ftjs.get(name)["metadata"]["uid"]]


def test_runs_created_while_the_operator_is_down_all_succeed(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    start_operator(namespace).kill()
    names, losses = [f"down-{i}" for i in range(6)], [0.1 * (i + 1) for i in range(6)]
    for name, loss in zip(names, losses, strict=True):
        ftjs.create(run(name, loss=loss))
    start_operator(namespace)
    all_succeeded(ftjs, wait_for, names, losses)


def test_runs_resumed_while_the_operator_is_down_succeed(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    op = start_operator(namespace)
    names, losses = [f"resumed-{i}" for i in range(3)], [0.2, 0.3, 0.4]
    for name, loss in zip(names, losses, strict=True):
        ftjs.create(run(name, loss=loss, suspend=True))
    for name in names:
        status(ftjs, wait_for, name, "Suspended")
        wait_for(lambda name=name: ftjs.jobs(name), 30, f"{name}'s suspended Job", namespace)
    op.kill()
    for name in names:
        ftjs.patch(name, {"spec": {"suspend": False}})
    start_operator(namespace)
    all_succeeded(ftjs, wait_for, names, losses)


def test_a_retention_cleanup_interrupted_by_sigkill_finishes_after_restart(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kubectl: Any
) -> None:
    op = start_operator(namespace)
    ftjs.create(run("scratch", output={"pvc": "artifacts", "retention": "Delete"}))
    status(ftjs, wait_for, "scratch", "Succeeded")
    assert ftjs.get("scratch")["metadata"]["finalizers"] == ["finetune.dev/cleanup"]
    ftjs.delete("scratch")
    wait_for(lambda: (ftjs.get("scratch") or {}).get("metadata", {}).get("deletionTimestamp"), 30, namespace=namespace)
    op.kill()
    start_operator(namespace)
    wait_for(lambda: ftjs.get("scratch") is None, 90, "the finalizer released after the cleanup", namespace)
    events = json.loads(
        kubectl(
            "get", "events", "--field-selector", "involvedObject.name=scratch", "-o", "json", namespace=namespace
        ).stdout
    )["items"]
    # kwok runs no command: the cleanup pod reports nothing, and the operator says so (once the pod is gone)
    outcomes = {(e["reason"], e["message"]) for e in events if e["reason"].startswith("Output")}
    assert outcomes == {("OutputKept", "the cleanup Job scratch-cleanup completed without reporting what it removed")}
