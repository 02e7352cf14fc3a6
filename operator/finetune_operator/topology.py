"""A run over several nodes seen through its pods (pure): each node's latest pod (the Indexed Job's
completion index), the pod that speaks for the run (the cause of a failure, an unschedulable node,
else node 0, which writes the result), and ``status.topology``."""

from __future__ import annotations

from typing import Any

from finetune_api.protocol import ExitCode
from finetune_api.resource import FineTuneJobSpec, NodePod, TopologyStatus

from .summaries import COMPLETION_INDEX, latest_pod, node_name, pod_condition, terminated_state, true_conditions


def completion_index(pod: dict[str, Any]) -> int | None:
    """The pod's node rank, as kept by ``summaries.pod_summary`` (or read from a whole pod)."""
    meta = pod.get("metadata") or {}
    raw = meta.get("completionIndex")
    if raw is None:
        raw = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or (meta.get("labels") or {}).get(COMPLETION_INDEX)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def latest_by_index(pods: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each node's latest pod (a retried node has several)."""
    by_index: dict[int, list[dict[str, Any]]] = {}
    for pod in pods:
        index = completion_index(pod)
        if index is not None:
            by_index.setdefault(index, []).append(pod)
    return {index: p for index, group in sorted(by_index.items()) if (p := latest_pod(group)) is not None}


def _failed_code(pod: dict[str, Any]) -> int | None:
    code = (terminated_state(pod) or {}).get("exitCode")
    return int(code) if isinstance(code, int) and code != 0 else None


def cause_of_failure(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod whose failure ended the run: the earliest to fail that did not merely lose a peer
    (PEER_LOST), else the earliest to fail at all."""
    failed = [p for p in pods if _failed_code(p) is not None]
    if not failed:
        return None
    finished = lambda p: (terminated_state(p) or {}).get("finishedAt") or ""  # noqa: E731
    own = [p for p in failed if _failed_code(p) != ExitCode.PEER_LOST]
    return min(own or failed, key=finished)


def _unschedulable(pod: dict[str, Any]) -> bool:
    scheduled = pod_condition(pod, "PodScheduled") or {}
    return scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"


def speaking_pod(pods: list[dict[str, Any]], nodes: int, job: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pod the verdicts read. One node: the latest. Several: the cause once the Job failed;
    while it runs, a node's pod that cannot be scheduled or is still pending, else node 0's (its
    trainer holds global rank 0: progress, artifacts and the success record)."""
    if nodes == 1:
        return latest_pod(pods)
    latest = latest_by_index(pods)
    conditions = true_conditions(job)
    if "Failed" in conditions or "FailureTarget" in conditions:
        return cause_of_failure(pods) or latest.get(0) or latest_pod(pods)
    if not ({"Complete", "SuccessCriteriaMet"} & set(conditions)):
        waiting = [p for p in latest.values() if ((p.get("status") or {}).get("phase") or "Pending") == "Pending"]
        stuck = [p for p in waiting if _unschedulable(p)] or waiting
        if stuck:
            return stuck[0]
    return latest.get(0) or latest_pod(pods)


def who(pod: dict[str, Any], nodes: int) -> str:
    """``pod x (node 1 of 2, on worker-b)``: a pod of a run over several nodes, in a message."""
    index = completion_index(pod)
    where = f", on {node_name(pod)}" if node_name(pod) else ""
    rank = f"node {index} of {nodes}" if index is not None else f"one of {nodes} nodes"
    return f"pod {pod['metadata'].get('name')} ({rank}{where})"


def topology(spec: FineTuneJobSpec, pods: list[dict[str, Any]], plan: dict[str, Any] | None) -> TopologyStatus:
    """``status.topology``: the layout, the global batch (the trainer's plan resolves ``auto``) and
    each node's latest pod (one node too: the NODES column and where the pod runs)."""
    nodes = spec.resources.nodes
    per_node = max(spec.resources.gpus, 1)
    world = nodes * per_node
    training = spec.training
    micro = (plan or {}).get("microBatchSize") or (
        training.batch_size if isinstance(training.batch_size, int) else None
    )
    steps = (plan or {}).get("gradientAccumulationSteps") or training.gradient_accumulation_steps
    return TopologyStatus(
        nodes=nodes,
        processes_per_node=per_node,
        world_size=world,
        global_batch_size=micro * steps * world if micro else None,
        pods=[NodePod(index=i, name=p["metadata"]["name"], node=node_name(p)) for i, p in by_node(nodes, pods).items()],
    )


def by_node(nodes: int, pods: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each node's latest pod; a one-node run's Job is not indexed, its latest pod is node 0's."""
    if nodes > 1:
        return latest_by_index(pods)
    latest = latest_pod(pods)
    return {0: latest} if latest is not None else {}
