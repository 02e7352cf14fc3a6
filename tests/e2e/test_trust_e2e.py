"""Trust and failure causes on the real node (issue 16): through the kubelet, containerd and the
trainer image, under the chart's admission policies, with the operator as the chart's Deployment.

- a Secret that does not exist fails the run in seconds with its own reason;
- a volume that cannot be mounted is named;
- `retention: Delete` of a running run leaves nothing of it, the trainer having ended first;
- a new run under a failed run's name meets that run's partial output, named as such; bad data is
  not retried (podFailurePolicy) whatever backoffLimit allows;
- a Job the operator's own (stolen) token makes with a config of its own is refused by the trainer.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes import config as kubeconfig

from finetune_devcluster.accounts import service_account_kubeconfig
from support.e2e import RELEASE, Runs, assert_one_line, classification

pytestmark = [
    pytest.mark.adversarial,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.usefixtures("operator_release"),
]
LONG = {
    "maxSteps": 5000,
    "batchSize": 8,
    "maxSeqLength": 64,
    "optimizer": "adamw_torch",
    "gradientCheckpointing": False,
    "loggingSteps": 1,
}


def test_a_missing_secret_fails_in_seconds(kube_api: client.ApiClient, run_ns: dict[str, Any]) -> None:
    runs = Runs(kube_api, run_ns["name"])
    runs.create(
        classification("no-secret", model={"source": "builtin:minilm-l6", "tokenSecretRef": {"name": "hub-token"}})
    )
    st = runs.wait("no-secret", lambda s: s.get("phase") == "Failed", 120, "Failed")
    assert st["reason"] == "SecretNotFound", st
    assert st["message"] == (
        "Secret hub-token (spec.model.tokenSecretRef) does not exist in the namespace: create it or fix "
        "spec.model.tokenSecretRef.name"
    )
    job = client.BatchV1Api(kube_api).read_namespaced_job("no-secret-trainer", run_ns["name"])
    assert job.spec.suspend is True  # the kubelet stops retrying
    assert_one_line(st)


def test_a_volume_that_cannot_be_mounted_is_named(
    cluster: Any, kubectl: Any, kube_api: client.ApiClient, run_ns: dict[str, Any], tmp_path: Path
) -> None:
    ns = run_ns["name"]
    gone = tmp_path / "gone"
    pv = cluster.local_claim(ns, "gone", gone, "1Gi")
    shutil.rmtree(gone)  # the local volume's directory disappears: the kubelet cannot mount it
    try:
        runs = Runs(kube_api, ns)
        runs.create(classification("unmountable", output={"pvc": "gone", "path": "x"}))
        st = runs.wait("unmountable", lambda s: s.get("reason") == "VolumeMountFailed", 180, "VolumeMountFailed")
        assert st["phase"] == "Pending", st
        assert st["message"].startswith("the trainer pod cannot mount its volumes on node "), st["message"]
        assert "MountVolume" in st["message"] and str(gone) in st["message"], st["message"]
        assert_one_line(st)
    finally:
        kubectl("delete", "ftj", "unmountable", "--wait=false", namespace=ns, check=False)
        kubectl("delete", "pv", pv, "--wait=false", check=False)


def test_deleting_a_running_run_with_retention_delete_leaves_nothing(
    kubectl: Any, kube_api: client.ApiClient, run_ns: dict[str, Any]
) -> None:
    """The cleanup runs after the trainer pod ended: nothing it writes on its way out survives."""
    ns = run_ns["name"]
    runs = Runs(kube_api, ns)
    runs.create(
        classification("scratch", training=LONG, output={"pvc": "artifacts", "path": "scratch", "retention": "Delete"})
    )
    runs.wait("scratch", lambda s: (s.get("progress") or {}).get("stage") == "training", 600, "training")
    out = run_ns["artifacts"] / "scratch"
    assert (out / "_RUN").is_file() and (out / "progress.json").is_file()
    kubectl("delete", "ftj", "scratch", "--timeout=300s", namespace=ns)
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.rglob("*"))
    events = json.loads(
        kubectl("get", "events", "--field-selector=involvedObject.name=scratch", "-o", "json", namespace=ns).stdout
    )["items"]
    deleted = [e["message"] for e in events if e["reason"] == "OutputDeleted"]
    assert len(deleted) == 1, [(e["reason"], e["message"]) for e in events]


def test_a_new_run_meets_the_partial_output_of_a_failed_one(
    kubectl: Any, kube_api: client.ApiClient, run_ns: dict[str, Any]
) -> None:
    ns = run_ns["name"]
    runs = Runs(kube_api, ns)
    bad_data = {"source": "pvc://datasets/log-intent/malformed.jsonl", "format": "classification"}
    runs.create(classification("again", dataset=bad_data, backoffLimit=2))
    st = runs.wait("again", lambda s: s.get("phase") == "Failed", 600, "Failed")
    assert st["reason"] == "InvalidData" and "malformed.jsonl:3" in st["message"], st
    pods = runs.core.list_namespaced_pod(ns, label_selector="job-name=again-trainer").items
    assert len(pods) == 1, [p.metadata.name for p in pods]  # bad data is not retried, backoffLimit 2 or not
    first_uid = json.loads((run_ns["artifacts"] / "again" / "_RUN").read_text())["runId"]
    kubectl("delete", "ftj", "again", "--timeout=120s", namespace=ns)
    runs.create(classification("again"))
    st = runs.wait("again", lambda s: s.get("phase") == "Failed", 600, "Failed")
    assert st["reason"] == "OutputExists", st
    assert (
        f"holds the partial output of run {first_uid} (FineTuneJob {ns}/again), which did not finish" in st["message"]
        and "set output.replace: true to take the directory over" in st["message"]
    ), st["message"]
    assert_one_line(st)


def test_a_config_written_with_the_operators_token_is_refused_by_the_trainer(
    cluster: Any, kube_api: client.ApiClient, run_ns: dict[str, Any], operator_release: str, tmp_path: Path
) -> None:
    """With the operator's own token an attacker replaces a suspended run's Job by one that mounts
    a ConfigMap of their own (remote code, another claim): admission lets it through (a ConfigMap's
    contents are beyond a policy), the trainer does not: it reads its FineTuneJob first."""
    ns = run_ns["name"]
    runs = Runs(kube_api, ns)
    runs.create(classification("victim", suspend=True))
    runs.wait("victim", lambda s: s.get("phase") == "Suspended" and s.get("jobName"), 120, "Suspended")
    admin_batch, admin_core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    original = kube_api.sanitize_for_serialization(admin_batch.read_namespaced_job("victim-trainer", ns))
    config = json.loads(admin_core.read_namespaced_config_map("victim-config", ns).data["config.json"])
    config["model"]["trustRemoteCode"] = True
    config["dataset"]["source"] = "/mnt/pvc/artifacts/someone-elses/secrets.jsonl"

    token = service_account_kubeconfig(
        kube_api, Path(cluster.kubeconfig), operator_release, f"{RELEASE}-finetune-operator", tmp_path / "op.kubeconfig"
    )
    with kubeconfig.new_client_from_config(config_file=str(token)) as stolen:
        core, batch = client.CoreV1Api(stolen), client.BatchV1Api(stolen)
        core.create_namespaced_config_map(
            ns, {"metadata": {"name": "evil-config"}, "data": {"config.json": json.dumps(config)}}
        )
        batch.delete_namespaced_job("victim-trainer", ns, propagation_policy="Background")
        wait_until(lambda: not admin_batch.list_namespaced_job(ns, field_selector="metadata.name=victim-trainer").items)
        batch.create_namespaced_job(ns, forged_job(original["spec"]["template"], "evil-config"))

    def ended() -> Any:
        for pod in admin_core.list_namespaced_pod(ns, label_selector="job-name=victim-trainer").items:
            for cs in pod.status.container_statuses or []:
                if cs.state.terminated:
                    return cs.state.terminated
        return None

    term = wait_until(ended, timeout=600)
    assert term.exit_code == 2, (term.exit_code, term.message)
    summary = json.loads(term.message)
    assert summary["reason"] == "InvalidConfig"
    assert summary["message"].startswith(f"the trainer's config does not match FineTuneJob {ns}/victim"), summary
    assert not (run_ns["artifacts"] / "victim" / "_RUN").exists()  # it wrote nothing


def forged_job(pod_template: dict[str, Any], config_map: str) -> dict[str, Any]:
    """The victim's Job as the attacker re-creates it: the same pod, their ConfigMap, running."""
    template = copy.deepcopy(pod_template)
    drop = ("controller-uid", "job-name")
    labels = template["metadata"].get("labels") or {}
    template["metadata"]["labels"] = {k: v for k, v in labels.items() if not any(d in k for d in drop)}
    for volume in template["spec"]["volumes"]:
        if volume.get("configMap"):
            volume["configMap"]["name"] = config_map
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "victim-trainer"},
        "spec": {"backoffLimit": 0, "template": template},
    }


def wait_until(predicate: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"not true after {timeout}s: {predicate}"
        time.sleep(1)
    return value
