"""Operator restarts (SIGKILL at any moment) never duplicate a Job; with leader election only one
of two replicas acts; cluster-wide watching under a ClusterRole with the same rules."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from support.operator import Ftj, make_namespace, minimal_ftj, provision_claims, sim, summary_json

pytestmark = pytest.mark.timeout(240)


def phase(ftjs: Ftj, name: str) -> str | None:
    return ftjs.status(name).get("phase")


@pytest.mark.adversarial
def test_a_run_that_finishes_while_the_operator_is_down_ends_succeeded_after_restart(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    op = start_operator(namespace)
    ftjs.create(
        minimal_ftj(
            "survivor",
            podAnnotations=sim(
                duration="6s", termination_message=summary_json(outcome="succeeded", metrics={"evalLoss": 0.75})
            ),
        )
    )
    wait_for(lambda: phase(ftjs, "survivor") == "Running", timeout=60, namespace=namespace)
    op.kill()
    # while the operator is down: the run finishes, and a new FineTuneJob arrives
    ftjs.create(minimal_ftj("while-down"))
    wait_for(
        lambda: any(
            c.type == "Complete" and c.status == "True"
            for j in ftjs.jobs("survivor")
            for c in j.status.conditions or []
        ),
        timeout=60,
        namespace=namespace,
        description="survivor's Job completes with no operator running",
    )
    assert phase(ftjs, "survivor") == "Running"  # nobody has reported it yet
    start_operator(namespace)
    wait_for(lambda: phase(ftjs, "survivor") == "Succeeded", timeout=60, namespace=namespace)
    assert ftjs.status("survivor")["metrics"] == {"evalLoss": 0.75}
    wait_for(lambda: phase(ftjs, "while-down") == "Succeeded", timeout=60, namespace=namespace)
    assert len(ftjs.jobs("survivor")) == 1 and len(ftjs.jobs("while-down")) == 1


@pytest.mark.adversarial
def test_sigkill_during_creation_never_duplicates(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any
) -> None:
    """Kill the operator right after it starts creating children, several times in a row."""
    names = [f"burst-{i}" for i in range(6)]
    for round_ in range(3):
        op = start_operator(namespace)
        if round_ == 0:
            for n in names:
                ftjs.create(minimal_ftj(n, podAnnotations=sim(duration="2s")))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(ftjs.jobs(n) for n in names):
            time.sleep(0.02)
        op.kill()
    start_operator(namespace)
    for n in names:
        wait_for(lambda n=n: phase(ftjs, n) == "Succeeded", timeout=90, namespace=namespace)
        assert len(ftjs.jobs(n)) == 1, n


def lease_holder(kube_api: client.ApiClient, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease("finetune-operator", namespace)
    except client.ApiException:
        return None
    return lease.spec.holder_identity


@pytest.mark.adversarial
def test_two_replicas_only_leader_acts(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kube_api: client.ApiClient
) -> None:
    a = start_operator(namespace)
    b = start_operator(namespace)
    holder = wait_for(lambda: lease_holder(kube_api, namespace), timeout=30, namespace=namespace)
    ids = {op: op.argv[op.argv.index("--identity") + 1] for op in (a, b)}
    leader, standby = (a, b) if ids[a] == holder else (b, a)
    assert ids[leader] == holder
    ftjs.create(minimal_ftj("first", podAnnotations=sim(duration="1s")))
    wait_for(lambda: phase(ftjs, "first") == "Succeeded", timeout=60, namespace=namespace)
    assert "starting kopf" in leader.logs()
    assert "starting kopf" not in standby.logs() and "waiting to become the leader" in standby.logs()
    # the leader goes away (clean shutdown releases the Lease): the standby takes over
    leader.stop()
    wait_for(lambda: lease_holder(kube_api, namespace) == ids[standby], timeout=30, namespace=namespace)
    ftjs.create(minimal_ftj("second", podAnnotations=sim(duration="1s")))
    wait_for(lambda: phase(ftjs, "second") == "Succeeded", timeout=60, namespace=namespace)
    assert "starting kopf" in standby.logs()
    assert len(ftjs.jobs("first")) == 1 and len(ftjs.jobs("second")) == 1


@pytest.mark.adversarial
def test_leader_killed_standby_takes_over_after_lease_expiry(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kube_api: client.ApiClient
) -> None:
    a = start_operator(namespace)
    holder = wait_for(lambda: lease_holder(kube_api, namespace), timeout=30, namespace=namespace)
    b = start_operator(namespace)
    assert holder == a.argv[a.argv.index("--identity") + 1]
    a.kill()  # no release: b must wait for the lease to expire (6s in the tests)
    t0 = time.monotonic()
    b_id = b.argv[b.argv.index("--identity") + 1]
    wait_for(lambda: lease_holder(kube_api, namespace) == b_id, timeout=30, namespace=namespace)
    assert time.monotonic() - t0 >= 3
    ftjs.create(minimal_ftj("after-failover", podAnnotations=sim(duration="1s")))
    wait_for(lambda: phase(ftjs, "after-failover") == "Succeeded", timeout=60, namespace=namespace)


def test_cluster_wide_under_cluster_role(
    ftjs: Ftj, namespace: str, start_operator: Any, wait_for: Any, kubectl: Any, kube_api: client.ApiClient
) -> None:
    """--all-namespaces, chosen at start-up: the same rules as a ClusterRole; FineTuneJobs in two
    namespaces are run by one operator."""
    other = make_namespace(kubectl, "ftj-clusterwide")
    op = None
    try:
        op = start_operator(namespace, clusterwide=True)
        provision_claims(kubectl, other)
        elsewhere = Ftj(client.CustomObjectsApi(kube_api), kube_api, other)
        elsewhere.create(minimal_ftj("elsewhere", podAnnotations=sim(duration="1s")))
        ftjs.create(minimal_ftj("here", podAnnotations=sim(duration="1s")))
        wait_for(lambda: phase(elsewhere, "elsewhere") == "Succeeded", timeout=60, namespace=other)
        wait_for(lambda: phase(ftjs, "here") == "Succeeded", timeout=60, namespace=namespace)
        assert len(elsewhere.jobs("elsewhere")) == 1 and len(ftjs.jobs("here")) == 1
    finally:
        if op is not None:
            op.stop()  # before its ClusterRole goes
        kubectl("delete", "namespace", other, "--wait=false", check=False)
        kubectl("delete", "clusterrolebinding,clusterrole", f"finetune-operator-{namespace}", check=False)
