"""Helpers for the operator integration tests (shared by conftest.py and the tests)."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from finetune_devcluster import KWOK_TOLERATION
from finetune_devcluster.accounts import service_account_kubeconfig
from finetune_devcluster.controlplane import free_port

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "finetune.dev_finetunejobs.yaml"
RBAC_RULES = ROOT / "charts" / "finetune-operator" / "files" / "rbac-rules.yaml"
TRAINER_RULES = ROOT / "charts" / "finetune-operator" / "files" / "trainer-rules.yaml"
TRAINER_CLUSTER_ROLE = "finetune-operator-trainer"  # the name rbac-rules.yaml lets the operator bind
OPERATOR_BIN = Path(sys.executable).with_name("finetune-operator")
GROUP, VERSION, PLURAL = "finetune.dev", "v1alpha1", "finetunejobs"


# The simulated runs belong on the kwok nodes: keep them off the real dev node (which runs pods'
# images), whichever test of the session started it.
NOT_DEV_NODE = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "finetune.dev/dev-node", "operator": "DoesNotExist"}]}]
        }
    }
}


# Simulated runs ask for the kwok nodes (tainted, so nothing else lands there by accident).
SIMULATED = {"affinity": NOT_DEV_NODE, "tolerations": [KWOK_TOLERATION]}


def minimal_ftj(name: str, **spec: Any) -> dict[str, Any]:
    """A FineTuneJob with only the required fields (plus SIMULATED: the kwok nodes; pass
    ``scheduling=...`` to replace it). Its simulated trainer ends with the trainer's completion
    record (SIMULATED_SUCCESS) unless ``podAnnotations`` steer the outcome themselves."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "builtin:smollm2-135m-instruct"},
            "dataset": {"source": "pvc://data/train.jsonl"},
            "output": {"pvc": "artifacts"},
            "scheduling": copy.deepcopy(SIMULATED),
        },
    }
    for key, value in spec.items():
        body["spec"][key] = value
    annotations = body["spec"].setdefault("podAnnotations", {})
    if not OUTCOME_ANNOTATIONS & set(annotations):
        annotations.update(sim(termination_message=SIMULATED_SUCCESS))
    return body


def sim(**annotations: str) -> dict[str, str]:
    """Pod annotations steering the kwok simulation: sim(exit_code="3") -> sim.finetune.dev/exit-code."""
    return {f"sim.finetune.dev/{k.replace('_', '-')}": v for k, v in annotations.items()}


def summary_json(**kw: Any) -> str:
    from finetune_api.protocol import TrainerSummary

    return TrainerSummary(**kw).to_termination_message()


SIMULATED_SUCCESS = summary_json(outcome="succeeded", metrics={"evalLoss": 1.0})
OUTCOME_ANNOTATIONS = set(sim(termination_message="", exit_code="", oom="", never_start=""))


class Ftj:
    """Helpers around FineTuneJobs in one namespace."""

    def __init__(self, api: client.CustomObjectsApi, kube_api: client.ApiClient, namespace: str):
        self.api = api
        self.kube_api = kube_api
        self.namespace = namespace
        self.batch = client.BatchV1Api(kube_api)
        self.core = client.CoreV1Api(kube_api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body)

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def jobs(self, name: str) -> list[Any]:
        return self.batch.list_namespaced_job(
            self.namespace, label_selector=f"finetune.dev/finetunejob={name},app.kubernetes.io/component=trainer"
        ).items

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        return next((c for c in self.status(name).get("conditions") or [] if c["type"] == ctype), None)


def operator_kubeconfig(
    cluster: Any, kubectl: Any, namespace: str, workdir: Path, sa: str = "finetune-operator", clusterwide: bool = False
) -> Path:
    """A kubeconfig for the ServiceAccount ``namespace/sa`` bound to exactly the operator's rules
    (charts/finetune-operator/files/rbac-rules.yaml): a Role + RoleBinding in ``namespace``, or with
    ``clusterwide`` a ClusterRole + ClusterRoleBinding (named after the namespace)."""
    rules = yaml.safe_load(RBAC_RULES.read_text())
    trainer_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": TRAINER_CLUSTER_ROLE},
        "rules": yaml.safe_load(TRAINER_RULES.read_text()),
    }
    kind, binding_kind = ("ClusterRole", "ClusterRoleBinding") if clusterwide else ("Role", "RoleBinding")
    role_name = f"finetune-operator-{namespace}" if clusterwide else sa
    role_meta = {"name": role_name} if clusterwide else {"name": role_name, "namespace": namespace}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": role_meta, "rules": rules}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": binding_kind,
        "metadata": dict(role_meta),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
    }
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}}
    # cluster-scoped rules (nodes) take effect only in a ClusterRole, as the chart grants them
    cluster_rules = [r for r in rules if "nodes" in r.get("resources", [])]
    cluster_meta = {"name": f"finetune-operator-nodes-{namespace}-{sa}"}
    cluster_role = {**role, "kind": "ClusterRole", "metadata": cluster_meta, "rules": cluster_rules}
    cluster_binding = {
        **binding,
        "kind": "ClusterRoleBinding",
        "metadata": cluster_meta,
        "roleRef": {**binding["roleRef"], "kind": "ClusterRole", "name": cluster_meta["name"]},
    }
    items = [trainer_role, account, role, binding, cluster_role, cluster_binding]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    api = cluster.api_client()
    try:
        return service_account_kubeconfig(
            api, cluster.kubeconfig, namespace, sa, workdir / f"kubeconfig-{namespace}-{sa}.yaml"
        )
    finally:
        api.close()


class OperatorProcess:
    def __init__(self, argv: list[str], log: Path, health_port: int, metrics_port: int):
        self.argv, self.log, self.health_port, self.metrics_port = argv, log, health_port, metrics_port
        self.proc: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        self._fh = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        return self

    def http(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc and self.proc.poll() is None, f"operator exited:\n{self.logs()[-5000:]}"
            if self.http(self.health_port, "/readyz")[0] == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"operator not ready in {timeout}s:\n{self.logs()[-5000:]}")

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def metrics(self) -> str:
        return self.http(self.metrics_port, "/metrics")[1]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_fh", None):
            self._fh.close()
        return self.proc.returncode if self.proc else None


def provision_claims(
    kubectl: Any,
    namespace: str,
    claims: tuple[str, ...] = ("data", "artifacts"),
    access_modes: tuple[str, ...] = ("ReadWriteOnce",),
) -> None:
    """PersistentVolumeClaims bound to hostPath PersistentVolumes (pods with unbound claims are
    unschedulable) with ``access_modes``; returns once they are Bound. Idempotent."""
    items = []
    for claim in claims:
        pv = f"{namespace}-{claim}"
        items.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {"test-ns": namespace}},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": list(access_modes),
                    "storageClassName": "",
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": f"/var/tmp/finetune-test-pv/{pv}", "type": "DirectoryOrCreate"},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            }
        )
        items.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": {
                    "accessModes": list(access_modes),
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    # the PV controller binds them asynchronously
    kubectl(
        "wait", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s",
        *(f"pvc/{claim}" for claim in claims), namespace=namespace,
    )  # fmt: skip


def launch_operator(
    cluster: Any,
    kubectl: Any,
    namespace: str,
    workdir: Path,
    *extra: str,
    index: int = 0,
    leader_election: bool = True,
    clusterwide: bool = False,
) -> OperatorProcess:
    """Start ``finetune-operator --namespace <namespace>`` (or ``--all-namespaces`` with a
    ClusterRole) under the operator ServiceAccount of ``namespace``, and provision the ``data`` and
    ``artifacts`` claims the test FineTuneJobs use there."""
    provision_claims(kubectl, namespace)
    kc = operator_kubeconfig(cluster, kubectl, namespace, workdir, clusterwide=clusterwide)
    hp, mp = free_port(), free_port()
    scope = ["--all-namespaces"] if clusterwide else ["--namespace", namespace]
    argv = [
        str(OPERATOR_BIN),
        *scope,
        "--kubeconfig",
        str(kc),
        "--health-port",
        str(hp),
        "--metrics-port",
        str(mp),
        "--trainer-image",
        "finetune-trainer:test",
        "--lease-namespace",
        namespace,
        "--identity",
        f"op-{index}-{uuid.uuid4().hex[:4]}",
        "--lease-duration",
        "6",
        "--lease-renew-interval",
        "2",
        "--leader-election" if leader_election else "--no-leader-election",
        *extra,
    ]
    return OperatorProcess(argv, workdir / f"operator-{namespace}-{index}.log", hp, mp).start()


RBAC_DENIAL = re.compile(r'forbidden: User \\?"[^"\\]+\\?" cannot [a-z]+ resource')


def assert_never_forbidden(op: OperatorProcess) -> None:
    """The operator's log shows no request refused by RBAC (it runs under exactly the chart's rules).
    Admission refusals it reports on purpose (a missing PriorityClass, Pod Security) do not count."""
    lines = [line for line in op.logs().splitlines() if RBAC_DENIAL.search(line)]
    assert not lines, "requests refused by RBAC:\n" + "\n".join(lines[:20])


def make_namespace(kubectl: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while kubectl("get", "serviceaccount", "default", namespace=name, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {name}"
        time.sleep(0.2)
    return name


class Env:
    """A test module's namespace, its FineTuneJobs client and the operator running for it."""

    def __init__(self, ns: str, ftjs: Ftj, op: OperatorProcess):
        self.ns, self.ftjs, self.op = ns, ftjs, op


def wait_status(
    env: Env,
    wait_for: Any,
    name: str,
    phase: str,
    reason: str | None = None,
    timeout: float = 60,
    objects: tuple[str, ...] = ("finetunejobs", "jobs", "pods"),
) -> dict[str, Any]:
    """The FineTuneJob's status once it shows ``phase`` (and ``reason``); ``objects`` are dumped on timeout."""

    def check() -> dict[str, Any] | None:
        s = env.ftjs.status(name)
        if s.get("phase") == phase and (reason is None or s.get("reason") == reason):
            return s
        return None

    return wait_for(check, timeout=timeout, namespace=env.ns, description=f"{name} {phase}/{reason}", objects=objects)
