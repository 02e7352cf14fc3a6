"""Trust on a shared cluster, operator side (the chart's RBAC and admission policies are tested in
tests/integration/chart): it never takes over or deletes objects it did not create, a run is its
FineTuneJob's uid, results are recorded before the Job may go away, a status someone else wrote
is corrected, and a pod that was deleted or never admitted is named as such."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from support.operator import Ftj, minimal_ftj, sim, summary_json

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(240)]


def status_of(ftjs: Ftj, name: str, phase: str, reason: str | None = None) -> Any:
    def check() -> dict[str, Any] | None:
        s = ftjs.status(name)
        return s if s.get("phase") == phase and (reason is None or s.get("reason") == reason) else None

    return check


def owner_uids(obj: Any) -> list[str]:
    return [ref.uid for ref in obj.metadata.owner_references or []]


def test_an_existing_service_account_is_a_name_conflict_never_adopted(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kubectl: Any
) -> None:
    """A tenant names a FineTuneJob so that a privileged ServiceAccount (`ci-trainer`, bound to
    admin) would be its trainer's: the run fails, the account is untouched, no pod runs as it."""
    kubectl("create", "serviceaccount", "ci-trainer", namespace=namespace)
    kubectl(
        "create",
        "rolebinding",
        "ci-admin",
        "--clusterrole=admin",
        "--serviceaccount",
        f"{namespace}:ci-trainer",
        namespace=namespace,
    )
    start_operator(namespace)
    ftjs.create(minimal_ftj("ci"))
    s = wait_for(status_of(ftjs, "ci", "Failed", "NameConflict"), timeout=60, namespace=namespace)
    assert (
        "ServiceAccount ci-trainer already exists" in s["message"] and "not created by this FineTuneJob" in s["message"]
    )
    assert owner_uids(ftjs.core.read_namespaced_service_account("ci-trainer", namespace)) == []
    assert ftjs.jobs("ci") == [] and not ftjs.batch.list_namespaced_job(namespace).items


def test_deleting_the_finetunejob_never_deletes_a_foreign_object(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kubectl: Any
) -> None:
    """A job named `app` meets the production ConfigMap `app-config`: deleting the job leaves it."""
    kubectl("create", "configmap", "app-config", "--from-literal=db=prod", namespace=namespace)
    start_operator(namespace)
    ftjs.create(minimal_ftj("app"))
    wait_for(status_of(ftjs, "app", "Failed", "NameConflict"), timeout=60, namespace=namespace)
    # its own children (created beside the refused ConfigMap) are the garbage collector's to remove
    own_sa = ftjs.core.read_namespaced_service_account("app-trainer", namespace)
    assert owner_uids(own_sa) == [ftjs.get("app")["metadata"]["uid"]]
    ftjs.delete("app")
    wait_for(
        lambda: (
            not ftjs.core.list_namespaced_service_account(namespace, field_selector="metadata.name=app-trainer").items
        ),
        timeout=60,
        namespace=namespace,
        description="the garbage collector removed app's own ServiceAccount",
    )
    cm = ftjs.core.read_namespaced_config_map("app-config", namespace)
    assert cm.data == {"db": "prod"} and owner_uids(cm) == []


def test_a_job_with_our_labels_that_we_did_not_create_is_not_the_run(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    """A Job labelled like a trainer Job and already Complete must not make the run Succeeded."""
    labels = {"finetune.dev/finetunejob": "spoofed", "app.kubernetes.io/component": "trainer"}
    ftjs.batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "decoy", "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": sim(
                            termination_message=summary_json(outcome="succeeded", metrics={"evalLoss": 0.001})
                        ),
                    },
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "trainer", "image": "decoy"}],
                        "affinity": minimal_ftj("x")["spec"]["scheduling"]["affinity"],
                        "tolerations": [{"operator": "Exists"}],  # the GPU and kwok taints
                    },
                },
            },
        },
    )
    wait_for(
        lambda: any(
            c.type == "Complete" for c in (ftjs.batch.read_namespaced_job("decoy", namespace).status.conditions or [])
        ),
        timeout=60,
        namespace=namespace,
    )
    start_operator(namespace)
    ftjs.create(
        minimal_ftj(
            "spoofed",
            podAnnotations=sim(
                duration="3s", termination_message=summary_json(outcome="succeeded", metrics={"evalLoss": 0.5})
            ),
        )
    )
    s = wait_for(status_of(ftjs, "spoofed", "Succeeded"), timeout=60, namespace=namespace)
    assert s["jobName"] == "spoofed-trainer" and s["metrics"] == {"evalLoss": 0.5}


def test_a_finetunejob_recreated_under_the_same_name_does_not_inherit_the_old_run(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    start_operator(namespace)
    first = summary_json(outcome="succeeded", metrics={"evalLoss": 1.11})
    second = summary_json(outcome="succeeded", metrics={"evalLoss": 2.22})
    ftjs.create(minimal_ftj("again", podAnnotations=sim(duration="1s", termination_message=first)))
    wait_for(status_of(ftjs, "again", "Succeeded"), timeout=60, namespace=namespace)
    ftjs.delete("again")
    wait_for(lambda: ftjs.get("again") is None, timeout=30, namespace=namespace)
    created = ftjs.create(minimal_ftj("again", podAnnotations=sim(duration="4s", termination_message=second)))
    seen: list[dict[str, Any]] = []

    def done() -> dict[str, Any] | None:
        s = ftjs.status("again")
        seen.append(s)
        return s if s.get("phase") == "Succeeded" else None

    final = wait_for(done, timeout=90, namespace=namespace)
    assert final["metrics"] == {"evalLoss": 2.22}
    assert not [s for s in seen if (s.get("metrics") or {}).get("evalLoss") == 1.11]
    (job,) = ftjs.jobs("again")
    assert owner_uids(job) == [created["metadata"]["uid"]]


def test_ttl_zero_never_loses_the_result_and_ttl_changes_reach_the_job(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    start_operator(namespace)
    names = [f"ephemeral-{i}" for i in range(6)]
    for i, name in enumerate(names):
        ftjs.create(
            minimal_ftj(
                name,
                ttlSecondsAfterFinished=0,
                podAnnotations=sim(
                    duration="1s", termination_message=summary_json(outcome="succeeded", metrics={"evalLoss": float(i)})
                ),
            )
        )
    ftjs.create(minimal_ftj("kept", ttlSecondsAfterFinished=3600))
    for i, name in enumerate(names):
        s = wait_for(status_of(ftjs, name, "Succeeded"), timeout=90, namespace=namespace)
        assert s["metrics"] == {"evalLoss": float(i)}
    for name in names:  # recorded first, then the Job goes away
        wait_for(
            lambda name=name: not ftjs.jobs(name),
            timeout=60,
            namespace=namespace,
            description=f"{name}'s Job removed by its TTL",
        )
        assert ftjs.status(name)["phase"] == "Succeeded"
    wait_for(status_of(ftjs, "kept", "Succeeded"), timeout=60, namespace=namespace)
    wait_for(
        lambda: (ftjs.jobs("kept") or [None])[0] and ftjs.jobs("kept")[0].spec.ttl_seconds_after_finished == 3600,
        timeout=30,
        namespace=namespace,
        description="the TTL set on kept's Job once its result was recorded",
    )
    ftjs.patch("kept", {"spec": {"ttlSecondsAfterFinished": 0}})  # documented as mutable
    wait_for(lambda: not ftjs.jobs("kept"), timeout=60, namespace=namespace, description="kept's Job removed")
    assert ftjs.status("kept")["metrics"] == {"evalLoss": 1.0}


def test_a_final_status_written_by_someone_else_is_corrected(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kubectl: Any
) -> None:
    """Without the chart's admission policy (not installed here) a forged phase lands; the operator
    puts back what the Job says, also after a restart."""
    op = start_operator(namespace)
    ftjs.create(minimal_ftj("forged", podAnnotations=sim(duration="120s")))
    wait_for(status_of(ftjs, "forged", "Running"), timeout=60, namespace=namespace)
    forgery = json.dumps({"status": {"phase": "Failed", "reason": "TrainerError", "message": "forged"}})
    kubectl("patch", "ftj", "forged", "--subresource=status", "--type=merge", "-p", forgery, namespace=namespace)
    wait_for(status_of(ftjs, "forged", "Running", "Running"), timeout=30, namespace=namespace)
    op.kill()
    kubectl("patch", "ftj", "forged", "--subresource=status", "--type=merge", "-p", forgery, namespace=namespace)
    assert ftjs.status("forged")["phase"] == "Failed"
    start_operator(namespace)
    s = wait_for(status_of(ftjs, "forged", "Running", "Running"), timeout=60, namespace=namespace)
    assert s["message"].startswith("training on node")


def test_a_deleted_pod_is_reported_as_deleted(ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any) -> None:
    start_operator(namespace)
    ftjs.create(minimal_ftj("interrupted", podAnnotations=sim(duration="120s")))
    s = wait_for(status_of(ftjs, "interrupted", "Running"), timeout=60, namespace=namespace)
    ftjs.core.delete_namespaced_pod(s["podName"], namespace)
    s = wait_for(status_of(ftjs, "interrupted", "Failed"), timeout=60, namespace=namespace)
    assert s["reason"] == "PodDeleted" and "was deleted (or evicted) before the trainer finished" in s["message"], s


def test_a_deleted_service_account_and_config_map_are_recreated(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    """Deleted while the run waits: the Job controller cannot create the pod without its
    ServiceAccount; the operator re-creates what it created, and the run goes on."""
    start_operator(namespace)
    ftjs.create(minimal_ftj("orphaned", suspend=True))
    wait_for(status_of(ftjs, "orphaned", "Suspended"), timeout=60, namespace=namespace)
    wait_for(lambda: ftjs.jobs("orphaned"), timeout=30, namespace=namespace)
    ftjs.core.delete_namespaced_service_account("orphaned-trainer", namespace)
    ftjs.core.delete_namespaced_config_map("orphaned-config", namespace)
    ftjs.patch("orphaned", {"spec": {"suspend": False}})
    wait_for(status_of(ftjs, "orphaned", "Succeeded"), timeout=150, namespace=namespace)
    assert ftjs.core.read_namespaced_config_map("orphaned-config", namespace).data["config.json"]
    assert ftjs.core.read_namespaced_service_account("orphaned-trainer", namespace)


def test_over_quota_waits_pending_then_runs(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kubectl: Any
) -> None:
    kubectl("create", "quota", "no-jobs", "--hard=count/jobs.batch=0", namespace=namespace)
    start_operator(namespace)
    ftjs.create(minimal_ftj("queued"))
    s = wait_for(status_of(ftjs, "queued", "Pending", "QuotaExceeded"), timeout=60, namespace=namespace)
    assert (
        "ResourceQuota" in s["message"]
        and next(c for c in s["conditions"] if c["type"] == "Stalled")["status"] == "True"
    )
    kubectl("delete", "quota", "no-jobs", namespace=namespace)
    wait_for(status_of(ftjs, "queued", "Succeeded"), timeout=90, namespace=namespace)
    assert len(ftjs.jobs("queued")) == 1


def test_removing_our_labels_from_the_job_or_pod_does_not_lose_the_run(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kubectl: Any
) -> None:
    """A tenant with `edit` strips the labels the operator watches by: the run is still followed
    (the Job is found by name and owner and relabelled; the finished pod by the Job controller's
    own label) and ends with its real result, not JobDeleted or ResultMissing."""
    start_operator(namespace)
    result = summary_json(outcome="succeeded", metrics={"evalLoss": 0.42})
    ftjs.create(minimal_ftj("unlabelled-job", podAnnotations=sim(duration="8s", termination_message=result)))
    ftjs.create(minimal_ftj("unlabelled-pod", podAnnotations=sim(duration="8s", termination_message=result)))
    wait_for(status_of(ftjs, "unlabelled-job", "Running"), timeout=60, namespace=namespace)
    s = wait_for(status_of(ftjs, "unlabelled-pod", "Running"), timeout=60, namespace=namespace)
    kubectl("label", "job", "unlabelled-job-trainer", "finetune.dev/finetunejob-", namespace=namespace)
    kubectl("label", "pod", s["podName"], "finetune.dev/finetunejob-", namespace=namespace)
    for name in ("unlabelled-job", "unlabelled-pod"):
        final = wait_for(
            lambda name=name: ftjs.status(name) if ftjs.status(name).get("phase") in ("Succeeded", "Failed") else None,
            timeout=90,
            namespace=namespace,
        )
        assert (final["phase"], final.get("metrics")) == ("Succeeded", {"evalLoss": 0.42}), final
    job = ftjs.batch.read_namespaced_job("unlabelled-job-trainer", namespace)
    assert job.metadata.labels["finetune.dev/finetunejob"] == "unlabelled-job"  # put back


def test_a_rolebinding_deleted_while_suspended_is_back_before_the_run_resumes(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    start_operator(namespace)
    ftjs.create(minimal_ftj("paused", suspend=True))
    wait_for(status_of(ftjs, "paused", "Suspended"), timeout=60, namespace=namespace)
    rbac = client.RbacAuthorizationV1Api(ftjs.kube_api)
    wait_for(
        lambda: rbac.list_namespaced_role_binding(namespace, field_selector="metadata.name=paused-trainer").items,
        timeout=30,
        namespace=namespace,
    )
    rbac.delete_namespaced_role_binding("paused-trainer", namespace)
    ftjs.patch("paused", {"spec": {"suspend": False}})
    wait_for(status_of(ftjs, "paused", "Succeeded"), timeout=90, namespace=namespace)
    binding = rbac.read_namespaced_role_binding("paused-trainer", namespace)
    assert owner_uids(binding) == [ftjs.get("paused")["metadata"]["uid"]]
