"""One FineTuneJob over two real nodes (issue 20): the dev cluster's `dev-node` and `dev-node-2`, each
a kubelet and containerd of its own on this machine. The log-intent run with `resources.nodes: 2` is
an Indexed Job of two pods, one per node, under a headless Service; the trainer processes meet at
node 0's c10d rendezvous and train over gloo on CPU. Its data and output are ReadWriteMany claims
both nodes mount (hostPath volumes of this machine, as an NFS or CephFS claim would be).

- two nodes x one process train the same loss curve as one node x two processes (run here, outside
  the cluster, from the run's own config), and beat the untrained baseline;
- a node's pod deleted mid-run: the run is retried as a whole and resumes from its checkpoint;
- three nodes asked for, two exist: Pending with the scheduler's message, then a clear failure at
  the rendezvous bound;
- the rendezvous endpoint gone (its Service deleted, again whenever it comes back): a clear failure
  within the bound, not a hang.

The wall times and losses are printed for docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from finetune_devcluster.node import REAL_NODE_LABEL
from support.e2e import Runs, assert_one_line, classification, final, training, write_datasets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("operator_release")]
ON_REAL_NODES = {"nodeSelector": {REAL_NODE_LABEL: "true"}}
CPU = {"gpus": 0, "cpu": "500m", "memory": "3Gi", "shmSize": "64Mi"}
TRAINING = {
    "maxSteps": 12,
    "learningRate": 0.003,
    "batchSize": 16,
    "gradientAccumulationSteps": 1,
    "maxSeqLength": 64,
    "optimizer": "adamw_torch",
    "gradientCheckpointing": False,
    "loggingSteps": 1,
    "seed": 42,
}
LOSS_TOLERANCE = 1e-3  # the same data order and global batch: equal up to float rounding


@pytest.fixture
def shared_ns(
    cluster: Any, kubectl: Any, namespace: str, tmp_path: Path, dev_nodes_2: list[str]
) -> Iterator[dict[str, Any]]:
    """The test's namespace opted in (Pod Security `restricted`), with the claims `datasets` and
    `artifacts` ReadWriteMany: both real nodes mount them."""
    kubectl(
        "label", "namespace", namespace, "finetune.dev/enabled=true", "pod-security.kubernetes.io/enforce=restricted"
    )
    data = write_datasets(tmp_path / "datasets")
    pvs = [
        cluster.shared_claim(namespace, "datasets", data, "1Gi"),
        cluster.shared_claim(namespace, "artifacts", tmp_path / "artifacts", "1Gi"),
    ]
    yield {"name": namespace, "datasets": data, "artifacts": tmp_path / "artifacts", "nodes": dev_nodes_2}
    for pv in pvs:
        kubectl("delete", "pv", pv, "--wait=false", check=False)


def spread(
    name: str, nodes: int, *, training: dict[str, Any] = TRAINING, retries: int = 0, **resources: Any
) -> dict[str, Any]:
    """The short MiniLM classification run over ``nodes`` real nodes (one process each)."""
    return classification(
        name,
        training=dict(training),
        scheduling=ON_REAL_NODES,
        resources={**CPU, "nodes": nodes, **resources},
        backoffLimit=retries,
    )


def losses(folder: Path) -> dict[int, float]:
    metrics = json.loads((folder / "metrics.json").read_text())
    return {int(h["step"]): float(h["loss"]) for h in metrics["trainLosses"]}


def local_two_processes(runs: Runs, name: str, ns: dict[str, Any], out: Path) -> tuple[Path, float]:
    """The run's own config (its ConfigMap) trained here as one node with two processes (gloo on
    CPU), its claims' paths read from this machine; returns the output directory and wall time."""
    config = json.loads(runs.core.read_namespaced_config_map(f"{name}-config", ns["name"]).data["config.json"])
    mounts = {"/mnt/pvc/datasets": str(ns["datasets"]), "/mnt/pvc/artifacts": str(out)}
    for section, field in (("dataset", "source"), ("dataset", "validationSource"), ("output", "dir")):
        value = config[section].get(field)
        if value:
            root = next(m for m in mounts if value.startswith(m))
            config[section][field] = mounts[root] + value[len(root) :]
    config["reporting"] = {"terminationMessagePath": str(out / "termination-log")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNE_")}
    env.update(FINETUNE_PROCESSES="2", OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "finetune_trainer", "--config", str(out / "config.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return Path(config["output"]["dir"]), time.monotonic() - t0


def test_two_nodes_train_the_loss_curve_of_one_node_with_two_processes(
    kube_api: client.ApiClient, shared_ns: dict[str, Any], tmp_path: Path
) -> None:
    ns = shared_ns["name"]
    runs = Runs(kube_api, ns)
    runs.create(spread("one", 1))
    one = runs.wait("one", final, 900, "finished")
    assert one["phase"] == "Succeeded", one
    runs.create(spread("pair", 2))
    pair = runs.wait("pair", final, 900, "finished")
    assert pair["phase"] == "Succeeded", json.dumps(pair, indent=1)
    topology = pair["topology"]
    assert (topology["nodes"], topology["processesPerNode"], topology["worldSize"]) == (2, 1, 2)
    assert topology["globalBatchSize"] == 32
    assert sorted(p["node"] for p in topology["pods"]) == sorted(shared_ns["nodes"])  # one pod per real node
    assert pair["metrics"]["accuracy"] > pair["metrics"]["baselineAccuracy"], pair["metrics"]
    assert_one_line(pair)
    here, seconds = local_two_processes(runs, "pair", shared_ns, tmp_path / "local")
    two_nodes, two_processes = losses(shared_ns["artifacts"] / "pair"), losses(here)
    assert set(two_nodes) == set(two_processes) and len(two_nodes) == TRAINING["maxSteps"]
    worst = max(abs(two_nodes[s] - two_processes[s]) for s in two_nodes)
    assert worst <= LOSS_TOLERANCE, (two_nodes, two_processes)
    print(
        f"\nlog-intent, {TRAINING['maxSteps']} steps on CPU: 1 node x 1 process {one['durationSeconds']:.0f} s "
        f"(final loss {losses(shared_ns['artifacts'] / 'one')[TRAINING['maxSteps']]:.4f}); 2 nodes x 1 process "
        f"{pair['durationSeconds']:.0f} s (loss {two_nodes[TRAINING['maxSteps']]:.4f}); 1 node x 2 processes "
        f"outside the cluster {seconds:.0f} s; largest loss difference 2x1 vs 1x2 {worst:.2e}"
    )


def test_a_node_deleted_mid_run_is_retried_as_a_whole_and_resumes(
    kube_api: client.ApiClient, shared_ns: dict[str, Any]
) -> None:
    ns = shared_ns["name"]
    runs = Runs(kube_api, ns)
    longer = {**TRAINING, "maxSteps": 40, "saveSteps": 4}
    runs.create(spread("killed", 2, training=longer, retries=1))
    runs.wait("killed", lambda s: training(s) and s["progress"]["step"] >= 6, 900, "past a checkpoint")
    victim = next(p["name"] for p in runs.status("killed")["topology"]["pods"] if p["index"] == 1)
    runs.core.delete_namespaced_pod(victim, ns)
    st = runs.wait("killed", final, 1200, "finished")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    metrics = json.loads((shared_ns["artifacts"] / "killed" / "metrics.json").read_text())
    assert metrics["resumedFromStep"] >= 4 and metrics["steps"] == 40, metrics
    # the run went on in new pods; the Job counts at most the deleted pod as failed (backoffLimit 1),
    # never its peer, which exits PEER_LOST (13) and is ignored by the podFailurePolicy
    job = runs.batch.read_namespaced_job("killed-trainer", ns)
    assert victim not in [p["name"] for p in st["topology"]["pods"]], st["topology"]
    assert (job.status.failed or 0) <= 1, job.status


def test_more_nodes_than_exist_stay_pending_then_fail_at_the_rendezvous_bound(
    kube_api: client.ApiClient, shared_ns: dict[str, Any]
) -> None:
    runs = Runs(kube_api, shared_ns["name"])
    runs.create(spread("three", 3, rendezvousTimeoutSeconds=60))
    st = runs.wait("three", lambda s: s.get("reason") == "Unschedulable", 300, "Unschedulable")
    # whichever pod the scheduler left without a node (they are created together) is named with its index
    assert st["phase"] == "Pending" and re.match(r"pod three-trainer-(\d)-\w+ \(node \1 of 3\): ", st["message"]), st
    assert "didn't match pod anti-affinity rules" in st["message"], st  # the scheduler's words
    assert_one_line(st)
    started = time.monotonic()
    st = runs.wait("three", final, 600, "finished")
    assert st["phase"] == "Failed" and "not all 3 nodes joined the rendezvous" in st["message"], st
    assert time.monotonic() - started < 60 + 180, "the bound did not hold"
    assert_one_line(st)


def test_the_rendezvous_endpoint_gone_fails_clearly_within_the_bound(
    kube_api: client.ApiClient, shared_ns: dict[str, Any]
) -> None:
    """The Service is deleted whenever it exists (the operator re-creates lost prerequisites): node 0's
    name does not resolve, and every pod ends at the bound with a message that says so."""
    ns = shared_ns["name"]
    runs = Runs(kube_api, ns)
    runs.create(spread("lost", 2, rendezvousTimeoutSeconds=30))
    started, deleted = time.monotonic(), 0
    while not final(st := runs.status("lost")):
        assert time.monotonic() - started < 600, f"no failure after 600 s: {st}"
        try:
            runs.core.delete_namespaced_service("lost-trainer", ns)
            deleted += 1
        except ApiException as e:
            assert e.status == 404, e
        time.sleep(0.5)
    assert deleted >= 1
    assert st["phase"] == "Failed" and st["reason"] == "TrainerError", st
    assert "could not reach the rendezvous endpoint lost-trainer-0.lost-trainer:29400" in st["message"], st
    assert_one_line(st)
