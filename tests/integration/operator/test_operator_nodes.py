"""A FineTuneJob over several nodes (``resources.nodes``) against the real API server, with kwok
simulating the trainer pods on its fake GPU nodes (two A100 nodes, a T4 node, a CPU node): the
Indexed Job and its headless Service, the output claim's access modes checked before anything is
created, status.topology, the pod whose failure ended the run named, and a run asking for more
nodes than fit kept Pending with the scheduler's words."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from support.operator import (
    Env,
    Ftj,
    assert_never_forbidden,
    launch_operator,
    make_namespace,
    minimal_ftj,
    provision_claims,
    sim,
    summary_json,
)
from support.operator import (
    wait_status as support_wait_status,
)

pytestmark = pytest.mark.timeout(180)

A100 = {"gpus": 1, "gpuProduct": "NVIDIA-A100-SXM4-80GB"}  # two kwok nodes have them
SHARED = {"pvc": "shared"}  # ReadWriteMany


@pytest.fixture(scope="module")
def env(
    cluster: Any, kubectl: Any, kube_api: client.ApiClient, crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    ns = make_namespace(kubectl, "ftj-nodes")
    op = launch_operator(cluster, kubectl, ns, tmp_path_factory.mktemp("operator"))
    provision_claims(kubectl, ns, ("shared",), access_modes=("ReadWriteMany",))
    op.wait_ready()
    yield Env(ns, Ftj(client.CustomObjectsApi(kube_api), kube_api, ns), op)
    code = op.stop()
    print(f"--- operator log (exit {code})\n{op.logs()[-6000:]}")
    kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert_never_forbidden(op)  # the Service and the claim read under exactly the chart's rules


def wait_status(env: Env, wait_for: Any, name: str, phase: str, reason: str | None = None) -> dict[str, Any]:
    return support_wait_status(
        env, wait_for, name, phase, reason, timeout=90, objects=("finetunejobs", "jobs", "pods", "services")
    )


def test_two_nodes_run_as_an_indexed_job_under_a_headless_service(env: Env, wait_for: Any) -> None:
    env.ftjs.create(minimal_ftj("pair", resources={**A100, "nodes": 2}, output=SHARED))
    s = wait_status(env, wait_for, "pair", "Succeeded")
    (job,) = env.ftjs.jobs("pair")
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == ("Indexed", 2, 2)
    assert job.spec.template.spec.subdomain == "pair-trainer"
    service = env.ftjs.core.read_namespaced_service("pair-trainer", env.ns)
    assert service.spec.cluster_ip == "None" and service.spec.publish_not_ready_addresses is True
    assert service.spec.selector == {"finetune.dev/finetunejob": "pair", "app.kubernetes.io/component": "trainer"}
    assert service.metadata.owner_references[0].kind == "FineTuneJob"
    pods = env.ftjs.core.list_namespaced_pod(env.ns, label_selector="finetune.dev/finetunejob=pair").items
    assert sorted(p.spec.node_name for p in pods) == ["gpu-a100-0", "gpu-a100-1"]  # one pod per node
    env_vars = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env_vars["FINETUNE_RDZV_ENDPOINT"] == "pair-trainer-0.pair-trainer:29400"
    topology = s["topology"]
    assert (topology["nodes"], topology["processesPerNode"], topology["worldSize"]) == (2, 1, 2)
    assert topology["globalBatchSize"] == 4 * 4 * 2  # the defaults: batch 4, accumulation 4
    assert [(p["index"], p["node"]) for p in topology["pods"]] in (
        [(0, "gpu-a100-0"), (1, "gpu-a100-1")],
        [(0, "gpu-a100-1"), (1, "gpu-a100-0")],
    )
    config = env.ftjs.core.read_namespaced_config_map("pair-config", env.ns).data["config.json"]
    assert '"outputAccessModes": [\n      "ReadWriteMany"' in config  # the claim was read, and passed on


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        (
            "rwo-nodes",
            {"resources": {**A100, "nodes": 2}},
            "resources.nodes 2 needs output.pvc 'artifacts' to be ReadWriteMany (it is ReadWriteOnce)",
        ),
        (
            "rwo-replicas",
            {"serving": {"replicas": 2}},
            "serving.replicas 2 needs the output claim 'artifacts' to be ReadOnlyMany or ReadWriteMany "
            "(it is ReadWriteOnce)",
        ),
    ],
)
def test_a_claim_that_cannot_be_shared_is_refused_before_anything_is_created(
    env: Env, wait_for: Any, name: str, spec: dict[str, Any], message: str
) -> None:
    env.ftjs.create(minimal_ftj(name, **spec))
    s = wait_status(env, wait_for, name, "Failed", "ClaimAccessMode")
    assert s["message"].startswith(message) and "\n" not in s["message"]
    assert env.ftjs.jobs(name) == []
    selector = f"finetune.dev/finetunejob={name}"
    assert not env.ftjs.core.list_namespaced_config_map(env.ns, label_selector=selector).items
    assert not env.ftjs.core.list_namespaced_service_account(env.ns, label_selector=selector).items


def test_the_pod_whose_failure_ended_the_run_is_named(env: Env, wait_for: Any) -> None:
    """Node 1's trainer fails; node 0's only lost it (PEER_LOST, not counted): the status names node 1's pod."""
    annotations = {
        **sim(exit_code="0"),
        "sim.finetune.dev/exit-code.node-0": "13",
        "sim.finetune.dev/termination-message.node-0": summary_json(
            outcome="failed", reason="TrainerError", message="node 1 (w), rank 1: lost a process of another node"
        ),
        "sim.finetune.dev/exit-code.node-1": "1",
        "sim.finetune.dev/termination-message.node-1": summary_json(
            outcome="failed", reason="TrainerError", message="node 1 (w), rank 1: RuntimeError: NCCL timeout"
        ),
    }
    env.ftjs.create(minimal_ftj("broken", resources={**A100, "nodes": 2}, output=SHARED, podAnnotations=annotations))
    s = wait_status(env, wait_for, "broken", "Failed", "TrainerError")
    assert s["message"].startswith("pod broken-trainer-1-"), s["message"]
    assert "(node 1 of 2, on gpu-a100-" in s["message"] and s["message"].endswith("RuntimeError: NCCL timeout")


def test_more_nodes_than_fit_stay_pending_with_the_schedulers_message(env: Env, wait_for: Any) -> None:
    env.ftjs.create(
        minimal_ftj("three", resources={**A100, "nodes": 3}, output=SHARED, podAnnotations=sim(duration="300s"))
    )
    s = wait_status(env, wait_for, "three", "Pending", "Unschedulable")
    # whichever pod the scheduler left without a node (they are created together) is named with its index
    assert re.match(r"pod three-trainer-(\d)-\w+ \(node \1 of 3\): ", s["message"]), s["message"]
    assert "anti-affinity" in s["message"]  # the scheduler's own words
    assert [p["index"] for p in s["topology"]["pods"]] == [0, 1, 2]


def test_a_service_of_the_name_not_created_by_the_run_is_a_name_conflict(env: Env, wait_for: Any) -> None:
    env.ftjs.core.create_namespaced_service(
        env.ns,
        {"metadata": {"name": "taken-trainer"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}}},
    )
    env.ftjs.create(minimal_ftj("taken", resources={**A100, "nodes": 2}, output=SHARED))
    s = wait_status(env, wait_for, "taken", "Failed", "NameConflict")
    assert "Service taken-trainer already exists" in s["message"]
    assert env.ftjs.jobs("taken") == []
