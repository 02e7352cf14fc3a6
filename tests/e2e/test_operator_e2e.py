"""End to end on the dev cluster's real node: `helm install` of the chart runs the operator image
(built from Dockerfile.operator) as its Deployment; FineTuneJobs run the trainer image (built from
Dockerfile.trainer, with the built-in demo models) as Jobs under Pod Security `restricted`, with a
read-only root file system as uid 1000, on `local` PersistentVolumes. The success run trains
MiniLM for real; each failure goes through the kubelet and containerd and reaches the
FineTuneJob's status with its documented reason and a one-line message."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from finetune_devcluster.node import GPU_PRODUCT
from support.e2e import LABELS, Runs, assert_one_line, classification

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800), pytest.mark.usefixtures("operator_release")]


def test_trains_minilm_in_the_trainer_image_on_the_real_node(
    cluster: Any, kubectl: Any, kube_api: client.ApiClient, run_ns: dict[str, Any], dev_node: str
) -> None:
    ns = run_ns["name"]
    runs = Runs(kube_api, ns)
    # one fake GPU: the device plugin allocates it, the trainer finds no CUDA and trains on CPU
    runs.create(
        classification(
            "tuned", resources={"gpus": 1, "gpuProduct": GPU_PRODUCT, "cpu": "1", "memory": "3Gi", "shmSize": "64Mi"}
        )
    )
    live: list[dict[str, Any]] = []

    def final(st: dict[str, Any]) -> bool:
        if st.get("phase") == "Running" and st.get("progress"):
            live.append(st["progress"])
        return st.get("phase") in ("Succeeded", "Failed")

    st = runs.wait("tuned", final, 900, "finished")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    pod = runs.core.read_namespaced_pod(st["podName"], ns)
    assert pod.spec.node_name == dev_node
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    assert pod.spec.containers[0].image.startswith("localhost/finetune-operator/trainer:")
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.containers[0].security_context.read_only_root_filesystem is True
    # live progress, patched by the trainer through the kubernetes Service while it ran
    assert any(p.get("stage") == "training" and p.get("step", 0) > 0 for p in live), live[-3:]
    metrics = st["metrics"]
    assert {"baselineAccuracy", "accuracy", "evalLoss"} <= set(metrics), metrics
    assert metrics["accuracy"] > metrics["baselineAccuracy"], metrics
    adapter = run_ns["artifacts"] / "tuned"
    assert st["artifacts"]["pvc"] == "artifacts" and st["artifacts"]["path"] == "tuned"
    assert (adapter / "adapter_model.safetensors").stat().st_uid == 1000  # written by the trainer's uid
    assert (adapter / "eval_report.md").is_file()
    assert_one_line(st)


def test_failures_reach_status_with_their_reason(kube_api: client.ApiClient, run_ns: dict[str, Any]) -> None:
    runs = Runs(kube_api, run_ns["name"])
    cases = {
        "malformed": (
            classification(
                "malformed",
                dataset={
                    "source": "pvc://datasets/log-intent/malformed.jsonl",
                    "format": "classification",
                    "labels": LABELS,
                },
            ),
            "InvalidData",
            "malformed.jsonl:3",
        ),
        "no-model": (
            classification("no-model", model={"source": "pvc://datasets/no-such-model"}),
            "ModelNotFound",
            "no-such-model",
        ),
        "oom": (
            classification("oom", resources={"gpus": 0, "cpu": "500m", "memory": "200Mi", "shmSize": "16Mi"}),
            "OOMKilled",
            "200Mi",
        ),
    }
    for body, _, _ in cases.values():
        runs.create(body)
    errors = []
    for name, (_, reason, needle) in cases.items():
        st = runs.wait(name, lambda s: s.get("phase") == "Failed", 600, "Failed")
        try:
            assert st.get("reason") == reason, st
            assert needle in st.get("message", ""), st
            assert_one_line(st)
        except AssertionError as exc:
            errors.append(f"{name}: {exc}")
    assert not errors, "\n".join(errors)


def test_pod_deleted_mid_run_fails_the_run(kube_api: client.ApiClient, run_ns: dict[str, Any]) -> None:
    runs = Runs(kube_api, run_ns["name"])
    runs.create(
        classification(
            "deleted",
            training={
                "maxSteps": 5000,
                "batchSize": 8,
                "maxSeqLength": 64,
                "optimizer": "adamw_torch",
                "gradientCheckpointing": False,
            },
        )
    )
    st = runs.wait("deleted", lambda s: (s.get("progress") or {}).get("stage") == "training", 600, "training")
    runs.core.delete_namespaced_pod(st["podName"], run_ns["name"])
    st = runs.wait("deleted", lambda s: s.get("phase") == "Failed", 300, "Failed")
    assert st.get("reason") == "PodDeleted", st
    assert f"the trainer pod {st['podName']} was deleted" in st["message"], st
    assert_one_line(st)


def test_more_gpus_than_the_node_has_stays_pending_with_the_schedulers_message(
    kube_api: client.ApiClient, run_ns: dict[str, Any]
) -> None:
    runs = Runs(kube_api, run_ns["name"])
    runs.create(
        classification("too-big", resources={"gpus": 2, "gpuProduct": GPU_PRODUCT, "cpu": "500m", "memory": "1Gi"})
    )
    st = runs.wait("too-big", lambda s: s.get("reason") == "Unschedulable", 120, "Unschedulable")
    assert st["phase"] == "Pending"
    assert "Insufficient nvidia.com/gpu" in st["message"], st
    assert_one_line(st)
