"""The operator under the chart's own identity and admission policies (a real subprocess with the
release's ServiceAccount token, trainer pods simulated on kwok): what it reports when the policies
stop it from doing what a FineTuneJob asks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from finetune_devcluster.controlplane import free_port
from support.chart import OPT_IN_LABEL, Release, create, install, trainer_job, wait_policies
from support.operator import OPERATOR_BIN, Ftj, OperatorProcess, minimal_ftj, provision_claims, sim

pytestmark = pytest.mark.timeout(300)
VALUES = {"admissionPolicies": {"tolerations": {"allowedKeys": ["nvidia.com/gpu", "kwok.x-k8s.io/node"]}}}


@pytest.fixture(scope="module")
def release(cluster: Any, kube_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    with install(cluster, kube_api, tmp_path_factory.mktemp("op"), lambda _: VALUES, label_team=True) as r:
        wait_policies(r, opt_in=True)
        yield r


@pytest.fixture(scope="module")
def operator(release: Release, kubectl: Any) -> Iterator[OperatorProcess]:
    provision_claims(kubectl, release.team)
    health, metrics = free_port(), free_port()
    argv = [
        str(OPERATOR_BIN),
        "--all-namespaces",
        f"--kubeconfig={release.operator_kubeconfig}",
        f"--health-port={health}",
        f"--metrics-port={metrics}",
        "--trainer-image=ghcr.io/finetune-operator/trainer:0.2.0",
        f"--trainer-cluster-role={release.fullname}-trainer",
        f"--lease-namespace={release.namespace}",
        "--lease-duration=6",
        "--lease-renew-interval=2",
    ]
    op = OperatorProcess(argv, release.tmp / "operator.log", health, metrics).start()
    op.wait_ready()
    yield op
    op.stop()
    print(f"--- operator log\n{op.logs()[-6000:]}")


@pytest.mark.adversarial
def test_a_suspend_in_a_namespace_opted_out_meanwhile_says_the_job_keeps_running(
    release: Release, operator: OperatorProcess, kube_api: client.ApiClient, wait_for: Any
) -> None:
    """An admin opts the namespace out while its run trains, then the user suspends the run: the
    operator may no longer touch the Job, and the status says so instead of claiming Suspended."""
    r = release
    ftjs = Ftj(client.CustomObjectsApi(kube_api), kube_api, r.team)
    ftjs.create(minimal_ftj("opted-out", podAnnotations=sim(duration="600s")))
    wait_for(lambda: ftjs.status("opted-out").get("phase") == "Running", 90, "Running", r.team)
    assert r.as_admin("label", "namespace", r.team, f"{OPT_IN_LABEL}-").returncode == 0
    deadline = time.monotonic() + 30  # the policy's bindings see the namespace's labels a moment later
    while create(r.as_operator, r.team, trainer_job("probe-trainer"), "--dry-run=server").returncode == 0:
        assert time.monotonic() < deadline, "the opt-out was never enforced"
        time.sleep(0.3)
    ftjs.patch("opted-out", {"spec": {"suspend": True}})

    def not_permitted() -> dict[str, Any] | None:
        s = ftjs.status("opted-out")
        return s if s.get("reason") == "NotPermitted" else None

    s = wait_for(not_permitted, 60, "NotPermitted", r.team, objects=("finetunejobs", "jobs"))
    assert s["phase"] == "Running", s
    assert s["message"].startswith(
        "spec.suspend is true but the operator may no longer change Job opted-out-trainer, which keeps running "
        "(retrying every 60s): "
    ), s["message"]
    assert "the namespace is not opted in" in s["message"] and "\n" not in s["message"]
    stalled = next(c for c in s["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    job = client.BatchV1Api(kube_api).read_namespaced_job("opted-out-trainer", r.team)
    assert not job.spec.suspend and job.status.active == 1


@pytest.mark.adversarial
@pytest.mark.parametrize("where", ["not-opted-in", "kube-system"])
def test_a_finetunejob_where_the_operator_may_not_act_says_so_and_creates_nothing(
    release: Release, operator: OperatorProcess, kube_api: client.ApiClient, wait_for: Any, where: str
) -> None:
    r = release
    namespace, fragment = {
        "not-opted-in": (r.other, "the namespace is not opted in"),
        "kube-system": ("kube-system", "it never acts in kube-system, kube-public, kube-node-lease"),
    }[where]
    ftjs = Ftj(client.CustomObjectsApi(kube_api), kube_api, namespace)
    ftjs.create(minimal_ftj("nowhere"))
    try:
        s = wait_for(lambda: ftjs.status("nowhere").get("reason") == "NotPermitted" and ftjs.status("nowhere"), 60,
                     "NotPermitted", namespace, objects=("finetunejobs", "jobs"))  # fmt: skip
        assert s["phase"] == "Pending" and fragment in s["message"] and "\n" not in s["message"], s
        assert ftjs.jobs("nowhere") == []
        assert (
            not client.CoreV1Api(kube_api)
            .list_namespaced_config_map(namespace, field_selector="metadata.name=nowhere-config")
            .items
        )
    finally:
        ftjs.delete("nowhere")
