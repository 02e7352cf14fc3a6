"""Several nodes: two ``finetune-train`` "pods" on this machine, one CPU process each, meet at a
c10d rendezvous on 127.0.0.1 and train over gloo as one run of two processes (as M pods of an
Indexed Job run M x GPUs processes over NCCL). They train as one node with two processes does; a
process that fails on one node ends both, and both name it; a node killed mid-run ends the other
one, and both restarted resume from the checkpoint; a rendezvous that cannot happen ends the pod
within its bound with a message that says why."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest

from finetune_api import distributed as contract
from finetune_api.protocol import ExitCode
from finetune_trainer import launcher
from finetune_trainer.artifacts import verify_checksums
from finetune_trainer.distributed import PEER_LOST
from finetune_trainer.errors import ConfigError
from support import trainer as helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nodes(cfg: dict, tmp: Path, port: int, timeout: int = 300, **env: str) -> list[helpers.Pod]:
    """Node 0 and node 1 of a two-node run, one process each. Their addresses 127.0.0.1 and
    127.0.0.2 (both loopback) order them at the rendezvous as the pods' names do."""
    return [
        helpers.Pod.start(
            cfg,
            tmp,
            f"node{node}",
            helpers.trainer_env(
                tmp,
                FINETUNE_PROCESSES="1",
                FINETUNE_NNODES="2",
                JOB_COMPLETION_INDEX=str(node),
                FINETUNE_RDZV_ENDPOINT=f"127.0.0.1:{port}",
                FINETUNE_RDZV_TIMEOUT_SECONDS=str(timeout),
                FINETUNE_NODE_ADDRESS=f"127.0.0.{node + 1}",
                **(env if node == 1 else {}),
            ),
        )
        for node in (0, 1)
    ]


def run_nodes(cfg: dict, tmp: Path, **env: str) -> list[helpers.Run]:
    pods = start_nodes(cfg, tmp, free_port(), **env)
    return [pod.wait() for pod in pods]


def train_losses(out: Path) -> list[tuple[int, float]]:
    return [(h["step"], h["loss"]) for h in json.loads((out / "metrics.json").read_text())["trainLosses"]]


@pytest.fixture
def sft_config(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("prompt-completion", 40))

    def make(out: str, **over) -> dict:
        return helpers.make_config(
            tiny_model,
            data,
            tmp_path / out,
            training={"maxSteps": 4, "saveSteps": 2, "packing": True},
            evaluation={"sampleGenerations": 1},
            output={"dir": str(tmp_path / out), "runId": "uid-1"},
            **over,
        )

    return make


def test_two_nodes_train_as_one_node_with_two_processes(sft_config, tmp_path):
    two_nodes = run_nodes(sft_config("two-nodes"), tmp_path)
    one_node = helpers.Pod.start(
        sft_config("one-node"), tmp_path, "one-node", helpers.trainer_env(tmp_path, FINETUNE_PROCESSES="2")
    ).wait()

    node0, node1 = two_nodes
    assert (node0.rc, node1.rc, one_node.rc) == (0, 0, 0), (node0.stderr[-3000:], node1.stderr[-3000:])
    # Global rank 0 runs on node 0: it alone reports progress and writes the termination message.
    assert node0.summary["outcome"] == "succeeded" and node1.summary == {}
    assert [p["stage"] for p in node0.progress].count("completed") == 1 and node1.progress == []
    metrics = json.loads((node0.out / "metrics.json").read_text())
    assert (metrics["nodes"], metrics["processes"], metrics["globalBatchSize"]) == (2, 2, 2 * 1 * 2)
    assert node0.summary["metrics"]["nodes"] == 2 and one_node.summary["metrics"]["nodes"] == 1
    assert verify_checksums(node0.out) == [] and not (node0.out / contract.RANK_FAILURES_DIR).exists()
    # The same data order and the same all-reduce: the same loss curve, step by step.
    steps, losses = zip(*train_losses(node0.out), strict=True)
    one_steps, one_losses = zip(*train_losses(one_node.out), strict=True)
    assert steps == one_steps == (1, 2, 3, 4)
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(losses, one_losses, strict=True)), (losses, one_losses)


def test_a_failing_process_on_one_node_ends_both_and_both_name_it(sft_config, tmp_path):
    cfg = sft_config("out")
    node0, node1 = run_nodes(cfg, tmp_path, CRASH_RANK="1", CRASH_STEP="3")

    # only the cause's own node exits with its code: the other pod, PEER_LOST, does not count as a failure
    assert (node0.rc, node1.rc) == (ExitCode.PEER_LOST, ExitCode.FAILED), (node0.stderr[-3000:], node1.stderr[-3000:])
    cause = f"node 1 ({socket.gethostname()}), rank 1: RuntimeError: simulated failure of one worker"
    assert node0.summary["message"] == node1.summary["message"] == cause
    assert node0.summary["reason"] == node1.summary["reason"] == "TrainerError"
    assert json.loads((node0.out / "progress.json").read_text())["stage"] == "failed"
    assert (node0.out / "checkpoints" / "checkpoint-2").is_dir() and not (node0.out / "_COMPLETE").exists()


def test_a_killed_node_ends_the_other_and_the_run_resumes_from_its_checkpoint(sft_config, tmp_path):
    cfg = sft_config("out")
    node0, node1 = run_nodes(cfg, tmp_path, CRASH_RANK="1", CRASH_STEP="3", CRASH_KILLS_NODE="1")

    assert node1.rc == -9 and node1.summary == {}  # SIGKILL: no termination message
    assert node0.rc == ExitCode.PEER_LOST, node0.stderr[-3000:]
    message = node0.summary["message"]
    lost = f"node 0 ({socket.gethostname()}), rank 0: lost a process of another node (that pod was stopped or failed): "
    assert message.startswith(lost) and PEER_LOST.search(message), message
    assert (node0.out / "checkpoints" / "checkpoint-2").is_dir()

    node0, node1 = run_nodes(cfg, tmp_path)
    assert (node0.rc, node1.rc) == (0, 0), (node0.stderr[-3000:], node1.stderr[-3000:])
    steps = [p["step"] for p in node0.progress if p.get("stage") == "training" and "loss" in p and "evalLoss" not in p]
    assert steps == [3, 4]
    metrics = json.loads((node0.out / "metrics.json").read_text())
    assert (metrics["resumedFromStep"], metrics["steps"], metrics["nodes"]) == (2, 4, 2)
    assert verify_checksums(node0.out) == [] and not (node0.out / "checkpoints").exists()
    assert not (node0.out / contract.RANK_FAILURES_DIR).exists()


@pytest.mark.parametrize(
    ("node", "host", "expected"),
    [
        (
            1,
            "127.0.0.1",
            "node 1: could not reach the rendezvous endpoint 127.0.0.1:{port} (FINETUNE_RDZV_ENDPOINT) "
            "within 3s: DistNetworkError: The client socket has timed out after 3000ms while trying to connect to "
            "(127.0.0.1, {port}).",
        ),
        (
            1,
            "finetune-rdzv.invalid",
            "node 1: could not reach the rendezvous endpoint finetune-rdzv.invalid:{port} "
            "(FINETUNE_RDZV_ENDPOINT) within 3s: DistNetworkError: The client socket has timed out after 3000ms while "
            "trying to connect to (finetune-rdzv.invalid, {port}).",
        ),
        (
            0,
            "127.0.0.1",
            "node 0: not all 2 nodes joined the rendezvous at 127.0.0.1:{port} within 3s "
            "(FINETUNE_RDZV_TIMEOUT_SECONDS): a node's pod did not start, or cannot reach node 0",
        ),
    ],
    ids=["endpoint-refuses", "endpoint-does-not-resolve", "other-node-never-joins"],
)
def test_a_rendezvous_that_cannot_happen_fails_within_its_bound(sft_config, tmp_path, node, host, expected):
    port = free_port()
    env = helpers.trainer_env(
        tmp_path,
        FINETUNE_PROCESSES="1",
        FINETUNE_NNODES="2",
        FINETUNE_NODE_RANK=str(node),
        FINETUNE_RDZV_ENDPOINT=f"{host}:{port}",
        FINETUNE_RDZV_TIMEOUT_SECONDS="3",
    )
    alone = helpers.Pod.start(sft_config("out"), tmp_path, "alone", env).wait(timeout=300)
    assert alone.rc == ExitCode.FAILED, alone.stderr[-3000:]
    assert (alone.summary["outcome"], alone.summary["reason"]) == ("failed", "TrainerError")
    assert alone.summary["message"] == expected.format(port=port)


def test_topology_from_the_environment():
    assert launcher.topology("uid", {"FINETUNE_PROCESSES": "2"}) == launcher.Topology(processes=2)
    env = {
        "FINETUNE_PROCESSES": "4",
        "FINETUNE_NNODES": "3",
        "JOB_COMPLETION_INDEX": "2",
        "FINETUNE_RDZV_ENDPOINT": "ft-trainer-0.ft-nodes",
    }
    top = launcher.topology("uid", env)
    assert top == launcher.Topology(4, 3, 2, "ft-trainer-0.ft-nodes:29400", "uid", 600, None)
    assert top.world_size == 12
    explicit = {**env, "FINETUNE_NODE_RANK": "0", "FINETUNE_RDZV_ID": "run-7", "FINETUNE_RDZV_TIMEOUT_SECONDS": "30"}
    assert launcher.topology(None, explicit) == launcher.Topology(4, 3, 0, "ft-trainer-0.ft-nodes:29400", "run-7", 30)
    assert launcher.topology(None, {**env, "FINETUNE_NODE_ADDRESS": "10.0.0.7"}).node_address == "10.0.0.7"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FINETUNE_NNODES": "0"}, "environment variable FINETUNE_NNODES='0': expected an integer >= 1"),
        ({"FINETUNE_NNODES": "two"}, "environment variable FINETUNE_NNODES='two': expected an integer >= 1"),
        ({"FINETUNE_NNODES": "2"}, "environment variable FINETUNE_RDZV_ENDPOINT is required with FINETUNE_NNODES=2"),
        (
            {"FINETUNE_NNODES": "2", "FINETUNE_RDZV_ENDPOINT": "ft-0.svc:http"},
            "environment variable FINETUNE_RDZV_ENDPOINT='ft-0.svc:http': expected host:port (port 1-65535)",
        ),
        (
            {"FINETUNE_NNODES": "2", "FINETUNE_RDZV_ENDPOINT": "ft-0.svc", "JOB_COMPLETION_INDEX": "2"},
            "environment variable JOB_COMPLETION_INDEX=2: expected a node rank 0..1",
        ),
        (
            {"FINETUNE_NNODES": "2", "FINETUNE_RDZV_ENDPOINT": "ft-0.svc", "FINETUNE_RDZV_TIMEOUT_SECONDS": "-1"},
            "environment variable FINETUNE_RDZV_TIMEOUT_SECONDS='-1': expected an integer >= 1",
        ),
    ],
)
def test_topology_refuses_a_bad_environment_naming_the_variable(env, message):
    with pytest.raises(ConfigError) as err:
        launcher.topology("uid", {"FINETUNE_PROCESSES": "1", **env})
    assert err.value.message.startswith(message), err.value.message


def test_each_node_runs_the_same_rendezvous_and_node_0_hosts_it():
    top = launcher.Topology(2, 3, 0, "ft-trainer-0.ft-nodes:29400", "uid", 60)
    argv = launcher.torchrun_command(top, ["--config", "c.json"])
    assert argv[1:] == [
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--nnodes=3",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=ft-trainer-0.ft-nodes:29400",
        "--rdzv-id=uid",
        "--rdzv-conf=is_host=true,join_timeout=60,read_timeout=60",
        "--max-restarts=0",
        "-m",
        "finetune_trainer",
        "--config",
        "c.json",
    ]
    other = launcher.torchrun_command(launcher.Topology(2, 3, 2, "e:1", "uid", 60, "10.0.0.7"), [])
    assert "--rdzv-conf=is_host=false,join_timeout=60,read_timeout=60" in other and "--local-addr=10.0.0.7" in other
    assert "--standalone" in launcher.torchrun_command(launcher.Topology(processes=2), [])


def test_a_pod_told_to_stop_says_so(tmp_path):
    """What torch.distributed.run records when the pod's SIGTERM reaches it (the launcher passes it on)."""
    error = tmp_path / "error.json"
    callstack = (
        "Traceback (most recent call last):\n  ...\n"
        "torch.distributed.elastic.multiprocessing.api.SignalException: Process 7522 got signal: 15\n"
    )
    error.write_text(
        json.dumps(
            {
                "message": {
                    "message": "SignalException: Process 7522 got signal: 15",
                    "extraInfo": {"py_callstack": callstack, "timestamp": "1"},
                }
            }
        )
    )
    top = launcher.Topology(1, 2, 1, "ft-trainer-0.ft-nodes:29400", "uid", 60)
    code, summary = launcher.first_failure(tmp_path / "no-reports", 1, top, error)
    assert (code, summary.reason) == (ExitCode.FAILED, "TrainerError")
    assert summary.message == "node 1: stopped by SIGTERM: the pod was deleted, evicted or preempted"


def test_another_nodes_report_of_an_earlier_attempt_is_not_this_attempts_cause(tmp_path):
    """Node 1's report of the last attempt stays until node 1 starts again; node 0, whose
    rendezvous timed out because node 1 never came, names that, not the old failure."""
    reports = tmp_path / ".rank-failures"
    reports.mkdir()
    old = {"summary": {"outcome": "failed", "reason": "TrainerError", "message": "RuntimeError: old"}}
    (reports / "node-1-rank-1.json").write_text(json.dumps({**old, "node": 1, "rank": 1, "time": 100.0, "exitCode": 1}))
    error = tmp_path / "error.json"
    callstack = "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError\n"
    error.write_text(
        json.dumps({"message": {"message": "RendezvousTimeoutError: ", "extraInfo": {"py_callstack": callstack}}})
    )
    top = launcher.Topology(1, 2, 0, "ft-trainer-0.ft-nodes:29400", "uid", 60)
    code, summary = launcher.first_failure(reports, 1, top, error, since=200.0)
    assert code == ExitCode.FAILED
    assert summary.message == (
        "node 0: not all 2 nodes joined the rendezvous at ft-trainer-0.ft-nodes:29400 within 60s "
        "(FINETUNE_RDZV_TIMEOUT_SECONDS): a node's pod did not start, or cannot reach node 0"
    )
    assert launcher.first_failure(reports, 1, top, error, since=50.0)[1].message == "node 1, rank 1: RuntimeError: old"
