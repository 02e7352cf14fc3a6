"""Data-parallel (DDP) training processes: one per GPU of a pod, on one node or on several.

``finetune-train`` started where it sees more than one GPU (``resources.gpus: N``), or as one of
several nodes (``FINETUNE_NNODES``, see ``finetune_api.distributed``), relaunches itself under
``torch.distributed.run`` (``launcher.py``), so the operator's Job stays one container with one
command per pod. Each process loads the (4-bit) model on its own GPU and trains on its share of
every batch; the global batch is ``batchSize x gradientAccumulationSteps x processes``.

This module is the processes' side. Rank 0 alone reports progress, evaluates, and writes
checkpoints' run state, artifacts and the termination message. A process that fails writes a
one-line report for the launcher (``report_failure``); with several nodes the reports go to the
shared output directory, so that every node's launcher names the same first failure.
``FINETUNE_PROCESSES`` overrides the number of processes per node (the CI runs CPU processes over
gloo).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from pathlib import Path

from finetune_api import distributed as contract
from finetune_api.protocol import TrainerSummary

from .progress import write_atomic

log = logging.getLogger("finetune_trainer")

PROCESSES_ENV = contract.PROCESSES
REPORTS_ENV = "FINETUNE_RANK_REPORTS"
"""Directory where each process that fails writes ``node-<n>-rank-<k>.json`` (set by the launcher)."""

# A process that failed only because another one went away: its report is not the cause.
PEER_LOST = re.compile(
    r"Connection (closed|reset) by peer|Broken pipe|DistNetworkError|NCCL communicator was aborted|"
    r"remote process exited|ProcessGroup.*(aborted|terminated)",
    re.IGNORECASE,
)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def nodes() -> int:
    """Nodes of the run (torch.distributed.run's ``GROUP_WORLD_SIZE``; 1 outside it)."""
    return int(os.environ.get("GROUP_WORLD_SIZE", "1"))


def node_rank() -> int:
    """This process's node, as the launcher resolved it (``FINETUNE_NODE_RANK``)."""
    return int(os.environ.get(contract.NODE_RANK, "0"))


def is_worker() -> bool:
    """True inside a process started by ``torch.distributed.run``."""
    return "LOCAL_RANK" in os.environ and "TORCHELASTIC_RUN_ID" in os.environ


def is_main() -> bool:
    return rank() == 0


def processes_wanted() -> int:
    """``FINETUNE_PROCESSES`` if set, else the number of visible CUDA GPUs (1 without CUDA)."""
    forced = os.environ.get(PROCESSES_ENV)
    if forced:
        return max(1, int(forced))
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def setup_worker() -> None:
    """Bind this worker to its GPU before anything is loaded onto one."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def finish_worker() -> None:
    """Leave the process group together, after a successful run. A rank that exits while rank 0
    still runs its final evaluation can abort in gloo's threads at interpreter exit (SIGABRT,
    "terminate called without an active exception"), failing a run that succeeded."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def report_failure(summary: TrainerSummary, code: int) -> None:
    """A failing worker's summary, for the launcher (the termination message is the launcher's)."""
    where = os.environ.get(REPORTS_ENV)
    if not where:
        return
    record = {
        "node": node_rank(),
        "host": socket.gethostname(),
        "rank": rank(),
        "time": time.time(),
        "exitCode": code,
        "peerLost": bool(PEER_LOST.search(summary.message or "")),
        "summary": summary.to_wire(),
    }
    try:
        write_atomic(Path(where, f"node-{node_rank()}-rank-{rank()}.json"), json.dumps(record))
    except OSError as exc:
        log.warning("cannot write the failure report of rank %d: %s", rank(), exc)
