"""End to end on the dev cluster's real node: `helm install` of the chart runs the operator image
(built from Dockerfile.operator) as its Deployment; FineTuneJobs run the trainer image (built from
Dockerfile.trainer, with the built-in demo models) as Jobs under Pod Security `restricted`, with a
read-only root file system as uid 1000, on `local` PersistentVolumes. The success run trains
MiniLM for real; each failure goes through the kubelet and containerd and reaches the
FineTuneJob's status with its documented reason and a one-line message."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from finetune_devcluster.images import Images
from finetune_devcluster.node import GPU_PRODUCT, NODE_LABEL

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "finetune-operator"
EXAMPLE = ROOT / "examples" / "log-intent"
GROUP, VERSION, PLURAL = "finetune.dev", "v1alpha1", "finetunejobs"
RELEASE, RELEASE_NS = "e2e", "finetune-e2e-system"
LABELS = ["anomaly", "auth", "dhcp", "link-state", "routing"]
ON_DEV_NODE = {NODE_LABEL: "true"}  # the session's cluster also has kwok nodes, which run nothing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def helm(cluster: Any, *args: str) -> str:
    done = subprocess.run(
        [str(cluster.control_plane.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def operator_release(cluster: Any, kubectl: Any, images: Images) -> str:
    """The chart installed with the operator and trainer images of this checkout; the operator
    runs as the chart's Deployment on the dev node."""
    operator_repo, operator_tag = Images.split(images.operator)
    trainer_repo, trainer_tag = Images.split(images.trainer)
    helm(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NS,
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
        "--set",
        f"image.repository={operator_repo}",
        "--set",
        f"image.tag={operator_tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        f"trainer.image.repository={trainer_repo}",
        "--set",
        f"trainer.image.tag={trainer_tag}",
        "--set",
        "trainer.pullPolicy=Never",
        "--set-json",
        'extraArgs=["--status-patch-interval=1"]',
        "--set-json",
        f"nodeSelector={json.dumps(ON_DEV_NODE)}",
    )
    yield RELEASE_NS
    helm(cluster, "uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait")
    kubectl("delete", "namespace", RELEASE_NS, "--wait=false", check=False)


@pytest.fixture
def run_ns(cluster: Any, kubectl: Any, namespace: str, operator_release: str, tmp_path: Path) -> dict[str, Any]:
    """The test's namespace opted in to the operator, Pod Security `restricted`, with the claims
    `datasets` (log-intent data, read-only for the trainer) and `artifacts` on the dev node."""
    kubectl(
        "label", "namespace", namespace, "finetune.dev/enabled=true", "pod-security.kubernetes.io/enforce=restricted"
    )
    data = tmp_path / "datasets"
    (data / "log-intent").mkdir(parents=True)
    lines = (EXAMPLE / "train.jsonl").read_text().splitlines()
    (data / "log-intent" / "train.jsonl").write_text("\n".join(lines[:240]) + "\n")
    (data / "log-intent" / "eval.jsonl").write_text(
        "\n".join((EXAMPLE / "eval.jsonl").read_text().splitlines()[:60]) + "\n"
    )
    bad = lines[:2] + ['{"text": "unterminated', *lines[3:40]]
    (data / "log-intent" / "malformed.jsonl").write_text("\n".join(bad) + "\n")
    pvs = [
        cluster.local_claim(namespace, "datasets", data, "1Gi"),
        cluster.local_claim(namespace, "artifacts", tmp_path / "artifacts", "1Gi"),
    ]
    yield {"name": namespace, "datasets": data, "artifacts": tmp_path / "artifacts"}
    for pv in pvs:
        kubectl("delete", "pv", pv, "--wait=false", check=False)


def classification(name: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "method": "classification",
        "model": {"source": "builtin:minilm-l6"},
        "dataset": {
            "source": "pvc://datasets/log-intent/train.jsonl",
            "validationSource": "pvc://datasets/log-intent/eval.jsonl",
            "format": "classification",
            "labels": LABELS,
        },
        "peft": {"type": "lora", "r": 8, "alpha": 16, "targetModules": ["auto"]},
        # a minute or two of CPU on a busy 2-core machine, enough to beat the untrained baseline
        "training": {
            "maxSteps": 12,
            "learningRate": 0.003,
            "batchSize": 16,
            "gradientAccumulationSteps": 1,
            "maxSeqLength": 64,
            "optimizer": "adamw_torch",
            "gradientCheckpointing": False,
            "loggingSteps": 2,
        },
        "output": {"pvc": "artifacts", "path": name},
        "resources": {"gpus": 0, "cpu": "500m", "memory": "3Gi", "shmSize": "64Mi"},
        "scheduling": {"nodeSelector": ON_DEV_NODE},
        "activeDeadlineSeconds": 1200,
    }
    spec.update(overrides)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "metadata": {"name": name}, "spec": spec}


class Runs:
    def __init__(self, kube_api: client.ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(kube_api)
        self.core = client.CoreV1Api(kube_api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> None:
        self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def status(self, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name).get("status") or {}

    def wait(self, name: str, done: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(name)
            if done(st):
                return st
            time.sleep(1)
        raise AssertionError(f"{name}: not {what} after {timeout}s: {json.dumps(self.status(name), indent=1)}")


def assert_one_line(status: dict[str, Any]) -> None:
    for text in [status.get("message", "")] + [c.get("message", "") for c in status.get("conditions") or []]:
        assert "\n" not in text and "Traceback" not in text, f"not a one-line message: {text!r}"


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
