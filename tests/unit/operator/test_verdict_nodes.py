"""A run over several nodes: the pod that speaks for it, the messages naming that pod's node, and
status.topology (pure; from the pods an Indexed Job's controller reports)."""

import pytest

from finetune_operator.topology import cause_of_failure, completion_index, speaking_pod
from support.status_objects import SCHEDULED, T_END, compute, job, pod, summary_message

UNSCHEDULABLE = {
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.",
}


def node_pod(index, phase="Running", name=None, **kw):
    """Pod ``index`` of the Indexed Job, as pod_summary keeps it."""
    p = pod(phase, name=name or f"demo-trainer-{index}-x{index}", node=f"worker-{index}", **kw)
    p["metadata"]["completionIndex"] = str(index)
    return p


def spread(ftj, nodes=2, **training):
    ftj["spec"]["resources"] = {"nodes": nodes, "gpus": 0}
    ftj["spec"]["training"] = {"batchSize": 8, "gradientAccumulationSteps": 2, **training}
    return ftj


def status_of(ftj, j, pods):
    return compute(ftj, j, speaking_pod(pods, ftj["spec"]["resources"]["nodes"], j), pods=tuple(pods)).status


def test_two_nodes_training_report_where_and_the_topology(ftj):
    spread(ftj)
    pods = [node_pod(i, scheduled=SCHEDULED, running=True) for i in (1, 0)]
    s = status_of(ftj, job(active=2), pods)
    assert (s["phase"], s["reason"]) == ("Running", "Running")
    assert s["message"] == "training on 2 nodes: worker-0, worker-1"
    assert s["podName"] == "demo-trainer-0-x0"  # node 0's: its trainer holds global rank 0
    assert s["topology"] == {
        "nodes": 2,
        "processesPerNode": 1,
        "worldSize": 2,
        "globalBatchSize": 32,  # 8 x 2 accumulation x 2 processes
        "pods": [
            {"index": 0, "name": "demo-trainer-0-x0", "node": "worker-0"},
            {"index": 1, "name": "demo-trainer-1-x1", "node": "worker-1"},
        ],
    }


def test_the_trainers_plan_gives_the_global_batch_of_batch_size_auto(ftj):
    spread(ftj, batchSize="auto")
    ftj["spec"]["resources"]["gpus"] = 4
    pods = [node_pod(i, scheduled=SCHEDULED, running=True) for i in (0, 1)]
    assert "globalBatchSize" not in status_of(ftj, job(active=2), pods)["topology"]
    ftj["status"] = {"plan": {"microBatchSize": 3, "gradientAccumulationSteps": 5}}
    topo = status_of(ftj, job(active=2), pods)["topology"]
    assert (topo["processesPerNode"], topo["worldSize"], topo["globalBatchSize"]) == (4, 8, 120)


def test_a_node_that_cannot_be_scheduled_keeps_the_run_pending_with_the_schedulers_message(ftj):
    spread(ftj, nodes=3)
    pods = [node_pod(i, scheduled=SCHEDULED, running=True) for i in (0, 1)]
    pods.append(node_pod(2, "Pending", scheduled=UNSCHEDULABLE))
    s = status_of(ftj, job(active=3), pods)
    assert (s["phase"], s["reason"]) == ("Pending", "Unschedulable")
    assert s["message"].startswith("pod demo-trainer-2-x2 (node 2 of 3): no node can run the trainer pod")
    assert "didn't match pod anti-affinity rules" in s["message"]


def test_the_pod_whose_failure_ended_the_run_is_named_not_the_ones_that_lost_it(ftj):
    spread(ftj)
    cause = summary_message(outcome="failed", reason="TrainerError", message="node 1 (w1), rank 1: boom")
    lost = summary_message(outcome="failed", reason="TrainerError", message="node 1 (w1), rank 1: lost a peer")
    pods = [
        node_pod(0, "Failed", scheduled=SCHEDULED, terminated={"exitCode": 13, "message": lost}),
        node_pod(1, "Failed", scheduled=SCHEDULED, terminated={"exitCode": 1, "message": cause}),
    ]
    pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = "2025-01-01T00:39:00Z"
    assert cause_of_failure(pods) is pods[1]  # PEER_LOST earlier, but not the cause
    s = status_of(ftj, job([{"type": "Failed", "reason": "BackoffLimitExceeded"}]), pods)
    assert (s["phase"], s["reason"]) == ("Failed", "TrainerError")
    assert s["message"] == "pod demo-trainer-1-x1 (node 1 of 2, on worker-1): node 1 (w1), rank 1: boom"
    assert "\n" not in s["message"]


def test_success_is_read_from_node_0_and_every_nodes_gpus_count(ftj):
    spread(ftj)
    ftj["spec"]["resources"]["gpus"] = 2
    done = summary_message(outcome="succeeded", metrics={"evalLoss": 0.5})
    pods = [
        node_pod(1, "Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0}),
        node_pod(0, "Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0, "message": done}),
    ]
    s = status_of(ftj, job([{"type": "Complete"}], completionTime=T_END), pods)
    assert (s["phase"], s["metrics"]) == ("Succeeded", {"evalLoss": 0.5})
    assert s["gpuSeconds"] == pytest.approx(s["durationSeconds"] * 2 * 2)


def test_a_retried_node_counts_with_its_latest_pod(ftj):
    spread(ftj)
    old = node_pod(1, "Failed", scheduled=SCHEDULED, terminated={"exitCode": 1}, created="2025-01-01T00:00:00Z")
    new = node_pod(1, name="demo-trainer-1-y1", scheduled=SCHEDULED, running=True, created="2025-01-01T00:41:00Z")
    pods = [node_pod(0, scheduled=SCHEDULED, running=True), old, new]
    s = status_of(ftj, job(active=2, failed=1), pods)
    assert s["phase"] == "Running" and [p["name"] for p in s["topology"]["pods"]] == [
        "demo-trainer-0-x0",
        "demo-trainer-1-y1",
    ]


def test_one_node_has_a_topology_of_its_one_pod(ftj):
    """The NODES column reads status.topology (spec.resources.nodes is not stored unless set)."""
    p = pod("Running", scheduled=SCHEDULED, running=True)
    s = compute(ftj, job(active=1), speaking_pod([p], 1, job(active=1)), pods=(p,)).status
    assert s["message"] == "training on node gpu-a100-0"
    topology = s["topology"]
    assert (topology["nodes"], topology["processesPerNode"], topology["worldSize"]) == (1, 2, 2)
    assert topology["pods"] == [{"index": 0, "name": p["metadata"]["name"], "node": "gpu-a100-0"}]


def test_the_completion_index_of_a_whole_pod_or_its_summary():
    assert completion_index({"metadata": {"annotations": {"batch.kubernetes.io/job-completion-index": "3"}}}) == 3
    assert completion_index({"metadata": {"completionIndex": "2"}}) == 2
    assert completion_index({"metadata": {}}) is None
