"""The Helm chart against a real API server (the devcluster): every rendered object passes a
server-side dry run, and `helm install` / `helm upgrade` / `helm uninstall` do what they should.

No kubelet pulls images here (kwok nodes fake pods), so these tests assert on the objects and
the Deployment's rollout (generation, ReplicaSets), not on a running operator.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import yaml

from support.chart import CHART, ftj, operator_rules, render, run_helm

CRD_NAME = "finetunejobs.finetune.dev"
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]


def server_dry_run(kubectl, objects: list[dict[str, Any]]) -> str:
    manifest = yaml.safe_dump_all(objects, sort_keys=False)
    result = kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-o", "name", "-f", "-", input=manifest, check=False
    )
    assert result.returncode == 0, f"server-side dry run refused the rendered chart:\n{result.stderr}"
    return result.stdout


VALUE_SETS = {
    "defaults": {},
    "namespaced": "namespaced",  # filled in with the test namespace
    "cluster-wide": {"watch": {"clusterWide": True}},
    "selector-expressions": {
        "watch": {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["ml"]},
                    {"key": "frozen", "operator": "DoesNotExist"},
                ]
            }
        }
    },
    "ha-no-metrics": {"replicas": 3, "metrics": {"enabled": False}, "extraArgs": ["--log-level=DEBUG"]},
}


@pytest.mark.parametrize("case", list(VALUE_SETS))
def test_every_rendered_object_passes_server_side_dry_run(case, cluster, kubectl, namespace):
    values = VALUE_SETS[case]
    if values == "namespaced":
        values = {"watch": {"namespaces": [namespace]}}
    objects = render(values, release="dry", namespace=namespace, include_crds=True)
    kinds = {o["kind"] for o in objects}
    assert {
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } <= kinds
    out = server_dry_run(kubectl, objects)
    for obj in objects:
        assert f"{obj['kind'].lower()}" in out.lower()
    assert len([line for line in out.splitlines() if line.strip()]) == len(objects)


def test_service_monitor_renders_a_valid_object_for_prometheus_operator(cluster, kubectl, namespace):
    """The devcluster has no prometheus-operator: a stand-in CRD (kind and scope only) lets the
    server check the ServiceMonitor's metadata; its spec is asserted in the unit tests."""
    stand_in = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "plural": "servicemonitors",
                "singular": "servicemonitor",
                "kind": "ServiceMonitor",
                "listKind": "ServiceMonitorList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    crd_name = stand_in["metadata"]["name"]
    created = kubectl("get", "crd", crd_name, check=False).returncode != 0
    if created:
        kubectl("apply", "-f", "-", input=json.dumps(stand_in))
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd_name}")
    try:
        objects = render({"metrics": {"serviceMonitor": {"enabled": True}}}, release="sm", namespace=namespace)
        monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
        assert len(monitors) == 1
        for _ in range(100):  # kubectl's discovery sees the new kind within a few seconds
            result = kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(monitors[0]), check=False)
            if result.returncode == 0:
                break
            time.sleep(0.2)
        assert result.returncode == 0, result.stderr
    finally:
        if created:
            kubectl("delete", "crd", crd_name, "--wait=false", check=False)


# --- helm install / upgrade / uninstall ---------------------------------------------------------------


class Release:
    def __init__(self, cluster, namespace: str) -> None:
        self.name = f"ftop-{uuid.uuid4().hex[:6]}"
        self.namespace = namespace
        self.kubeconfig = str(cluster.kubeconfig)
        self.fullname = f"{self.name}-finetune-operator"

    def helm(self, *args: str, check: bool = True):
        return run_helm(*args, "--kubeconfig", self.kubeconfig, "--namespace", self.namespace, check=check, timeout=180)


def get(kubectl, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    result = kubectl("get", kind, name, "-o", "json", namespace=namespace, check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    return json.loads(result.stdout)


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_helm_install_upgrade_uninstall(cluster, kubectl, namespace, wait_for):
    release = Release(cluster, namespace)
    try:
        _install_upgrade_uninstall(release, kubectl, namespace, wait_for)
    finally:
        release.helm("uninstall", release.name, "--ignore-not-found", check=False)


def _install_upgrade_uninstall(release: Release, kubectl, namespace: str, wait_for) -> None:
    name, full = release.name, release.fullname

    # install: defaults (namespaces opted in by label). The session's CRD may exist already
    # (applied by kubectl, or kept by another release): --take-ownership adopts it, as a user
    # upgrading from 0.1.0 (CRD from crds/, no release) does.
    out = release.helm("install", name, str(CHART), "--take-ownership").stdout
    assert "STATUS: deployed" in out and "get ftj -w" in out
    assert "kubectl label namespace team-a finetune.dev/enabled=true" in out
    crd = get(kubectl, "crd", CRD_NAME)
    assert crd is not None, "helm install did not install the CRD"
    assert crd["metadata"]["labels"]["helm.sh/chart"] == f"finetune-operator-{CHART_VERSION}"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == name
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = get(kubectl, "deployment", full, namespace)
    assert deployment["metadata"]["labels"]["app.kubernetes.io/instance"] == name
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["--all-namespaces"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert get(kubectl, "serviceaccount", full, namespace) is not None
    assert get(kubectl, "service", f"{full}-metrics", namespace) is not None
    cluster_role = get(kubectl, "clusterrole", full)
    lease_role = get(kubectl, "role", f"{full}-leader-election", namespace)
    rules = operator_rules(f"{full}-trainer")
    assert cluster_role["rules"] == _server_form(
        [r for r in rules if not _is_lease(r) and "nodes" not in r["resources"]]
    )
    assert lease_role["rules"] == _server_form([r for r in rules if _is_lease(r)])
    nodes_role = get(kubectl, "clusterrole", f"{full}-nodes")
    assert nodes_role["rules"] == _server_form([r for r in rules if "nodes" in r["resources"]])
    binding = get(kubectl, "clusterrolebinding", full)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": full, "namespace": namespace}]
    assert get(kubectl, "clusterrole", f"{full}-trainer")["rules"] == [
        {"apiGroups": ["finetune.dev"], "resources": ["finetunejobs/status"], "verbs": ["patch"]}
    ]
    assert env_of(deployment)["FINETUNE_OPERATOR_TRAINER_CLUSTER_ROLE"] == f"{full}-trainer"
    policies = _policies(kubectl, name)
    assert set(policies) == {f"{full}-{p}" for p in POLICIES}
    for policy in policies.values():  # the server compiled every CEL expression without a warning
        assert not policy.get("status", {}).get("typeChecking", {}).get("expressionWarnings"), policy["status"]
    opt_in = get(kubectl, "validatingadmissionpolicybinding", f"{full}-operator-opt-in-0")
    assert opt_in["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0] == {
        "key": "finetune.dev/enabled",
        "operator": "NotIn",
        "values": ["true"],
    }
    # The controller-manager picks the Deployment up (a ReplicaSet); no image is pulled here.
    wait_for(
        lambda: (get(kubectl, "deployment", full, namespace) or {}).get("status", {}).get("observedGeneration") == 1,
        description="deployment observed",
        namespace=namespace,
        objects=("deployments", "replicasets"),
    )
    assert len(_replicasets(kubectl, namespace, name)) == 1

    # upgrade: change values (more replicas, another trainer image, namespaced RBAC)
    out = release.helm(
        "upgrade",
        name,
        str(CHART),
        "--reuse-values",
        "--set",
        "replicas=2",
        "--set",
        "trainer.image.tag=0.2.0",
        "--set-json",
        "watch=" + json.dumps({"namespaces": [namespace]}),
    ).stdout
    assert "STATUS: deployed" in out and "REVISION: 2" in out
    deployment = get(kubectl, "deployment", full, namespace)
    assert deployment["metadata"]["generation"] == 2
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    env = env_of(deployment)
    assert env["FINETUNE_OPERATOR_TRAINER_IMAGE"] == "ghcr.io/finetune-operator/trainer:0.2.0"
    assert env["FINETUNE_OPERATOR_LEADER_ELECTION"] == "true"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [f"--namespace={namespace}"]
    # RBAC moved from the ClusterRole to a Role in the watched namespace.
    assert get(kubectl, "clusterrole", full) is None and get(kubectl, "clusterrolebinding", full) is None
    role = get(kubectl, "role", full, namespace)
    assert role["rules"] == _server_form([r for r in rules if not _is_lease(r) and "nodes" not in r["resources"]])
    opt_in = get(kubectl, "validatingadmissionpolicybinding", f"{full}-operator-opt-in-0")
    assert opt_in["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0] == {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": [namespace],
    }
    assert get(kubectl, "role", f"{full}-leader-election", namespace) is not None
    assert get(kubectl, "rolebinding", full, namespace)["roleRef"]["name"] == full
    # The new pod template starts a rollout: a second ReplicaSet.
    wait_for(
        lambda: (get(kubectl, "deployment", full, namespace) or {}).get("status", {}).get("observedGeneration") == 2,
        description="upgrade observed",
        namespace=namespace,
        objects=("deployments", "replicasets"),
    )
    wait_for(
        lambda: len(_replicasets(kubectl, namespace, name)) == 2,
        description="a new ReplicaSet",
        namespace=namespace,
        objects=("deployments", "replicasets"),
    )
    history = json.loads(release.helm("history", name, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2] and history[-1]["status"] == "deployed"

    # uninstall: everything goes but the CRD (crds.keep: helm.sh/resource-policy keep) and, with
    # it, the users' FineTuneJobs
    kubectl("create", "-f", "-", input=json.dumps(ftj("survivor")), namespace=namespace)
    out = release.helm("uninstall", name, "--wait", "--timeout", "120s").stdout
    assert f"[CustomResourceDefinition] {CRD_NAME}" in out, out  # helm names what it kept
    for kind, obj_name, ns in [
        ("deployment", full, namespace),
        ("serviceaccount", full, namespace),
        ("service", f"{full}-metrics", namespace),
        ("role", full, namespace),
        ("rolebinding", full, namespace),
        ("role", f"{full}-leader-election", namespace),
        ("clusterrole", full, None),
        ("clusterrole", f"{full}-trainer", None),
        ("clusterrole", f"{full}-edit", None),
        ("clusterrole", f"{full}-view", None),
    ]:
        assert get(kubectl, kind, obj_name, ns) is None, f"{kind}/{obj_name} survived helm uninstall"
    assert _policies(kubectl, name) == {}
    assert get(kubectl, "crd", CRD_NAME) is not None
    assert get(kubectl, "finetunejob", "survivor", namespace) is not None
    assert release.helm("status", name, check=False).returncode != 0


POLICIES = [
    "operator-protected-namespaces",
    "operator-opt-in",
    "operator-output",
    "operator-services",
    "finetunejob-requester",
    "status-integrity",
]


def _policies(kubectl, release: str) -> dict[str, dict[str, Any]]:
    out = kubectl("get", "validatingadmissionpolicies", "-l", f"app.kubernetes.io/instance={release}", "-o", "json")
    return {p["metadata"]["name"]: p for p in json.loads(out.stdout)["items"]}


def _replicasets(kubectl, namespace: str, release: str) -> list[dict[str, Any]]:
    out = kubectl(
        "get", "replicasets", "-l", f"app.kubernetes.io/instance={release}", "-o", "json", namespace=namespace
    )
    return json.loads(out.stdout)["items"]


def _is_lease(rule: dict[str, Any]) -> bool:
    return "coordination.k8s.io" in rule["apiGroups"] and "leases" in rule["resources"]


def _server_form(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PolicyRules as the server returns them (empty lists dropped)."""
    return [{k: v for k, v in rule.items() if v} for rule in rules]
