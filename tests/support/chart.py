"""Shared by the chart tests: where the chart and helm are, rendering it, and a release installed on
the dev cluster with requests to it as the operator, tenants and an admin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from finetune_devcluster.accounts import service_account_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "finetune-operator"
CRD_FILE = ROOT / "crds" / "finetune.dev_finetunejobs.yaml"
RULES_FILE = CHART / "files" / "rbac-rules.yaml"


def helm_binary() -> str:
    """helm from the project's binary cache (hack/build-k8s-binaries.sh), else from PATH.

    Missing helm skips the test on a developer machine but fails it in CI (CI=true), where
    `make test` builds it first."""
    try:
        from finetune_devcluster.binaries import bin_dir

        candidate = bin_dir() / "helm"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("helm")
    if found:
        return found
    message = "helm not found: run `make k8s-bin` (hack/build-k8s-binaries.sh builds it)"
    pytest.fail(message)


def run_helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    home = Path(tempfile.gettempdir()) / "finetune-operator-helm"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def set_args(values: dict[str, Any] | None) -> list[str]:
    """`--set-json key=<json>` for each top-level key (keeps types exact)."""
    out: list[str] = []
    for key, value in (values or {}).items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


def render(
    values: dict[str, Any] | None = None,
    *extra: str,
    release: str = "ft",
    namespace: str = "finetune-system",
    include_crds: bool = False,
) -> list[dict[str, Any]]:
    """`helm template` the chart and return the objects."""
    args = ["template", release, str(CHART), "--namespace", namespace, *set_args(values), *extra]
    if include_crds:
        args.append("--include-crds")
    out = run_helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        o
        for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def rules_file() -> dict[str, Any]:
    return yaml.safe_load(RULES_FILE.read_text())


def operator_rules(trainer_cluster_role: str) -> list[dict[str, Any]]:
    """rules_file() as the chart renders it: the `bind` rule names the release's trainer ClusterRole,
    keys sorted like Helm's toYaml."""
    out = []
    for rule in rules_file():
        if "clusterroles" in rule["resources"]:
            rule = {**rule, "resourceNames": [trainer_cluster_role]}
        out.append(dict(sorted(rule.items())))
    return out


# --- a release of the chart on the dev cluster, and requests to it ---------------------------------

OPT_IN_LABEL = "finetune.dev/enabled"


@dataclass
class Release:
    """A helm release and the namespaces its tests use: `team` (opted in) and `other` (not)."""

    name: str
    namespace: str
    team: str
    other: str
    kubectl_bin: str
    admin_kubeconfig: str
    operator_kubeconfig: Path
    admin_api: client.ApiClient
    tmp: Path
    clients: list[client.ApiClient] = field(default_factory=list)

    def api_client(self, kubeconfig: Path) -> client.ApiClient:
        """A Python API client authenticated by that kubeconfig (closed with the release)."""
        api = config.new_client_from_config(str(kubeconfig))
        self.clients.append(api)
        return api

    @property
    def fullname(self) -> str:
        return f"{self.name}-finetune-operator"

    @property
    def operator_user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    def run(self, kubeconfig: str | Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def as_admin(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(self.admin_kubeconfig, *args, input=input)

    def as_user(
        self, user: str, *args: str, input: str | None = None, groups: tuple[str, ...] = ("system:authenticated",)
    ) -> subprocess.CompletedProcess[str]:
        return self.as_admin(f"--as={user}", *[f"--as-group={g}" for g in groups], *args, input=input)

    def as_operator(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """With the operator ServiceAccount's own (TokenRequest) token, not impersonation."""
        return self.run(self.operator_kubeconfig, *args, input=input)


def create(run, namespace: str, obj: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return run("create", "-n", namespace, "-f", "-", *extra, input=json.dumps(obj))


def allowed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"refused:\n{result.stderr}"


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Assert a 403 whose message contains every fragment; returns the message."""
    assert result.returncode != 0, f"accepted, should have been refused:\n{result.stdout}"
    assert "Forbidden" in result.stderr or "forbidden" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    return result.stderr


def patch_status(api: client.ApiClient, namespace: str, name: str, status: dict[str, Any]) -> str | None:
    """A JSON merge patch of a FineTuneJob's status subresource, sent as the operator and the trainer
    send it (no GET first: neither may read it). None when accepted, else the server's 403 message."""
    request = api.param_serialize(
        "PATCH",
        f"/apis/finetune.dev/v1alpha1/namespaces/{namespace}/finetunejobs/{name}/status",
        header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
        body={"status": status},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request)
    response.read()
    if response.status == 200:
        return None
    assert response.status == 403, response.data
    return json.loads(response.data)["message"]


def can_i_rows(listing: str) -> dict[str, str]:
    """`kubectl auth can-i --list` output: {resource: its line} (non-resource URL lines left out)."""
    return {line.split()[0]: line for line in listing.splitlines()[1:] if line.strip() and not line.startswith(" ")}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


# --- objects -------------------------------------------------------------------------------------


def ftj(name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "builtin:smollm2-135m-instruct"},
            "dataset": {"source": "pvc://data/train.jsonl"},
            "output": {"pvc": "artifacts"},
        },
    }
    body["spec"].update(spec)
    return body


JOB_NAME_FIELD = "metadata.annotations['finetune.dev/finetunejob']"


def trainer_job(name: str, **pod: Any) -> dict[str, Any]:
    """A Job shaped like the operator's trainer Job `<name>`: its own ServiceAccount, the trainer
    image and entrypoint, configMap, emptyDir and PVC volumes only (suspended: no pods are needed)."""
    pod_spec = {
        "serviceAccountName": name,
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "trainer",
                "image": "ghcr.io/finetune-operator/trainer:0.1.0",
                "command": ["finetune-train", "--config", "/etc/finetune/config.json"],
                "env": [
                    {"name": "FINETUNE_JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": JOB_NAME_FIELD}}},
                    {"name": "FINETUNE_JOB_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": name.removesuffix("-trainer") + "-config"}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "output", "persistentVolumeClaim": {"claimName": "artifacts"}},
        ],
    }
    pod_spec.update(pod)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"suspend": True, "backoffLimit": 0, "template": {"spec": pod_spec}},
    }


def rolebinding(name: str, role_kind: str, role: str, subjects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects,
    }


def sa_subject(name: str, namespace: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def pod(name: str) -> dict[str, Any]:
    """A trainer pod as the operator dry-runs it (the pod of trainer_job)."""
    spec = trainer_job(f"{name}-trainer")["spec"]["template"]["spec"]
    spec.pop("serviceAccountName")  # (a dry run of a pod whose ServiceAccount does not exist is refused)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


# --- installing a release ------------------------------------------------------------------------


@contextmanager
def install(
    cluster, kube_api: client.ApiClient, tmp: Path, values: Callable[[str], dict[str, Any]], label_team: bool
) -> Iterator[Release]:
    """Create the namespaces, `helm install` with values(team namespace), yield the Release,
    uninstall and delete the namespaces.

    Several releases share the session's cluster, and one CRD can belong to one release only: the
    CRD is applied with kubectl (as an admin who manages it outside Helm would) and every release
    is installed with crds.enabled=false."""
    core = client.CoreV1Api(kube_api)
    suffix = uuid.uuid4().hex[:5]
    release_ns, team, other = f"ftsys-{suffix}", f"team-{suffix}", f"other-{suffix}"
    for ns, labels in ((release_ns, {}), (team, {OPT_IN_LABEL: "true"} if label_team else {}), (other, {})):
        core.create_namespace({"metadata": {"name": ns, "labels": labels}})
    name = f"p{suffix}"
    kubeconfig = str(cluster.kubeconfig)
    sets = [a for key, value in values(team).items() for a in ("--set-json", f"{key}={json.dumps(value)}")]
    kubectl_bin = str(cluster.control_plane.bin_dir / "kubectl")
    kubectl = [kubectl_bin, f"--kubeconfig={kubeconfig}"]
    apply = ("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    subprocess.run([*kubectl, *apply], check=True, capture_output=True, timeout=90)
    # `kubectl wait` errors out (instead of waiting) while a new CRD has no status.conditions yet
    established = ("wait", "--for=condition=Established", "--timeout=60s", "crd/finetunejobs.finetune.dev")
    deadline = time.monotonic() + 60
    while subprocess.run([*kubectl, *established], capture_output=True, timeout=90).returncode != 0:
        assert time.monotonic() < deadline, "the CRD never became Established"
        time.sleep(0.2)
    sets += ["--set", "crds.enabled=false"]
    try:
        run_helm("install", name, str(CHART), "--namespace", release_ns, "--kubeconfig", kubeconfig, *sets, timeout=180)
        sa = f"{name}-finetune-operator"
        operator_kc = service_account_kubeconfig(kube_api, cluster.kubeconfig, release_ns, sa, tmp / f"{sa}.kubeconfig")
        release = Release(
            name,
            release_ns,
            team,
            other,
            kubectl_bin,
            kubeconfig,
            operator_kc,
            kube_api,
            tmp,
        )
        try:
            yield release
        finally:
            for api in release.clients:
                api.close()
    finally:
        run_helm(
            "uninstall",
            name,
            "--namespace",
            release_ns,
            "--kubeconfig",
            kubeconfig,
            "--wait",
            "--ignore-not-found",
            check=False,
            timeout=180,
        )
        for ns in (release_ns, team, other):
            core.delete_namespace(ns)


def wait_enforced(probe, *fragments: str, timeout: float = 30.0) -> None:
    """Policies and bindings take effect a moment after they are created: poll a dry-run request
    that the policy refuses until it is refused."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result.returncode != 0 and all(f in result.stderr for f in fragments):
            return
        assert time.monotonic() < deadline, f"policy not enforced after {timeout}s: {result.stdout}{result.stderr}"
        time.sleep(0.3)


def wait_policies(release: Release, opt_in: bool) -> None:
    dry = "--dry-run=server"
    wait_enforced(
        lambda: create(release.as_operator, "kube-system", trainer_job("probe-trainer"), dry), "never acts in"
    )
    if opt_in:
        wait_enforced(
            lambda: create(release.as_operator, release.other, trainer_job("probe-trainer"), dry), "not opted in"
        )
    wait_enforced(
        lambda: create(release.as_operator, release.team, trainer_job("probe-trainer", hostNetwork=True), dry),
        "hostNetwork",
    )
    wait_enforced(
        lambda: create(
            release.as_admin, release.team, ftj("probe", scheduling={"priorityClassName": "system-node-critical"}), dry
        ),
        "priorityClassName",
    )
    probe = unique("probe")
    allowed(create(release.as_admin, release.team, ftj(probe)))
    wait_enforced(
        lambda: release.as_admin(
            "patch",
            "-n",
            release.team,
            "ftj",
            probe,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"phase":"Failed"}}',
            dry,
        ),
        "may not write the status",
    )
