"""Shared by the end-to-end tests (tests/e2e): helm against the session's cluster, the short
MiniLM classification run on the real node, following FineTuneJobs, checking their artifacts."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from finetune_devcluster.node import NODE_LABEL

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "finetune-operator"
EXAMPLE = ROOT / "examples" / "log-intent"
GROUP, VERSION, PLURAL = "finetune.dev", "v1alpha1", "finetunejobs"
LABELS = ["anomaly", "auth", "dhcp", "link-state", "routing"]
ON_DEV_NODE = {NODE_LABEL: "true"}  # the session's cluster also has kwok nodes, which run nothing
RELEASE, RELEASE_NS = "e2e", "finetune-e2e-system"
"""The release tests/e2e/conftest.py installs (its operator runs as <RELEASE>-finetune-operator)."""
# What every e2e release of the chart is installed with: the operator on the dev node, and status
# patches every second (the tests follow progress).
RELEASE_VALUES = [
    "--set-json",
    'extraArgs=["--status-patch-interval=1"]',
    "--set-json",
    f"nodeSelector={json.dumps(ON_DEV_NODE)}",
]


def helm(cluster: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The session's helm against the session's cluster."""
    done = subprocess.run(
        [str(cluster.control_plane.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done


def write_datasets(folder: Path) -> Path:
    """The log-intent data the runs read (train, eval, and a file with a malformed line 3)."""
    data = folder / "log-intent"
    data.mkdir(parents=True)
    lines = (EXAMPLE / "train.jsonl").read_text().splitlines()
    (data / "train.jsonl").write_text("\n".join(lines[:240]) + "\n")
    (data / "eval.jsonl").write_text("\n".join((EXAMPLE / "eval.jsonl").read_text().splitlines()[:60]) + "\n")
    bad = lines[:2] + ['{"text": "unterminated', *lines[3:40]]
    (data / "malformed.jsonl").write_text("\n".join(bad) + "\n")
    return folder


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
    """FineTuneJobs of one namespace: create, read, follow."""

    def __init__(self, kube_api: client.ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(kube_api)
        self.core = client.CoreV1Api(kube_api)
        self.batch = client.BatchV1Api(kube_api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> None:
        self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec})

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def wait(self, name: str, done: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(name)
            if done(st):
                return st
            time.sleep(1)
        raise AssertionError(f"{name}: not {what} after {timeout}s: {json.dumps(self.status(name), indent=1)}")

    def jobs_of(self, name: str) -> list[client.V1Job]:
        """Every Job in the namespace that this FineTuneJob controls."""
        uid = self.get(name)["metadata"]["uid"]
        return [
            j
            for j in self.batch.list_namespaced_job(self.namespace).items
            if any(ref.uid == uid and ref.controller for ref in j.metadata.owner_references or ())
        ]


def final(st: dict[str, Any]) -> bool:
    return st.get("phase") in ("Succeeded", "Failed")


def training(st: dict[str, Any]) -> bool:
    return (st.get("progress") or {}).get("stage") == "training" and (st.get("progress") or {}).get("step", 0) > 0


def assert_one_line(status: dict[str, Any]) -> None:
    for text in [status.get("message", "")] + [c.get("message", "") for c in status.get("conditions") or []]:
        assert "\n" not in text and "Traceback" not in text, f"not a one-line message: {text!r}"


def assert_artifacts_intact(folder: Path) -> list[str]:
    """The run's artifacts are complete (_COMPLETE) and every file SHA256SUMS lists has its sum;
    returns the listed files."""
    assert (folder / "_COMPLETE").is_file(), f"{folder}: no _COMPLETE"
    listed = []
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{folder / name}: wrong sum"
        listed.append(name)
    assert "adapter_model.safetensors" in listed, listed
    return listed


# --- pods of the trainer image on the dev node ------------------------------------------------------

SERVE_PORT = 8080
# A KServe v1 client, run in a pod: POST argv[2] (JSON) to argv[1], print the JSON answer on stdout.
CLIENT = (
    "import sys, urllib.request\n"
    "headers = {'Content-Type': 'application/json'}\n"
    "req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers=headers)\n"
    "print(urllib.request.urlopen(req, timeout=600).read().decode())\n"
)


def trainer_image_pod(
    name: str, image: str, args: list[str], *, claim: str | None = None, memory: str = "2Gi", **extra: Any
) -> dict[str, Any]:
    """A pod of the trainer image as Pod Security `restricted` wants it (uid 1000, read-only root, no
    capabilities), offline (HF_HUB_OFFLINE), with ``claim`` mounted read-only at /mnt/pvc/<claim>."""
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if claim:
        mounts.append({"name": "claim", "mountPath": f"/mnt/pvc/{claim}", "readOnly": True})
        volumes.append({"name": "claim", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "args": args,
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
        ],
        "resources": {"requests": {"cpu": "250m", "memory": memory}, "limits": {"memory": memory}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
        **extra,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": ON_DEV_NODE,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
        },
    }


def serve_objects(name: str, image: str, claim: str, adapter_path: str, model: str) -> list[dict[str, Any]]:
    """`finetune-train serve` of an adapter on a claim, and its Service; ready once the model answers."""
    args = ["serve", "--adapter", f"/mnt/pvc/{claim}/{adapter_path}", "--name", model, "--port", str(SERVE_PORT)]
    probe = {"httpGet": {"path": f"/v1/models/{model}", "port": SERVE_PORT}, "periodSeconds": 2}
    pod = trainer_image_pod(
        name, image, args, claim=claim, memory="3Gi", ports=[{"containerPort": SERVE_PORT}], readinessProbe=probe
    )
    pod["spec"]["restartPolicy"] = "Always"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"port": SERVE_PORT}]},
    }
    return [pod, service]


def client_pod(name: str, image: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """A pod that POSTs ``body`` to ``url`` once and prints the answer."""
    pod = trainer_image_pod(name, image, ["-c", CLIENT, url, json.dumps(body)], memory="256Mi")
    pod["spec"]["containers"][0]["command"] = ["python"]
    return pod
