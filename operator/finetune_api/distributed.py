"""The environment of a trainer pod in a run of several nodes: the contract between the operator
(which sets it) and ``finetune-train`` (which reads it). No torch import: the operator uses it.

A run of M nodes is M pods (an Indexed Job, one pod per node), each with the same container and
command. Every pod's ``finetune-train`` starts ``torch.distributed.run`` with ``--nnodes M``,
``--nproc-per-node P`` and a c10d rendezvous hosted by node 0 at ``RDZV_ENDPOINT``; the world is
M x P processes, global rank 0 (on node 0) alone writes artifacts, progress and the success
termination message. A pod without ``NNODES`` (or with 1) is a run on one node, as before.
"""

NNODES = "FINETUNE_NNODES"
"""Number of nodes (pods) of the run, every pod the same. Default 1: one node, no rendezvous."""

NODE_RANK = "FINETUNE_NODE_RANK"
"""This pod's node, 0 .. NNODES-1. Default: ``JOB_COMPLETION_INDEX`` (an Indexed Job sets it on
every pod), else 0. Node 0 hosts the rendezvous."""

JOB_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"
"""Set by the Job controller on the pods of an Indexed Job: the fallback for ``NODE_RANK``."""

PROCESSES = "FINETUNE_PROCESSES"
"""Training processes on this node (``--nproc-per-node``). Default: the CUDA GPUs the container
sees (``resources.gpus``), 1 without CUDA."""

RDZV_ENDPOINT = "FINETUNE_RDZV_ENDPOINT"
"""``host[:port]`` of the c10d rendezvous (required when ``NNODES`` > 1): node 0's stable name,
``<job>-0.<headless service>`` (see ``rendezvous_endpoint``). Default port ``DEFAULT_RDZV_PORT``."""

RDZV_ID = "FINETUNE_RDZV_ID"
"""The run's id at the rendezvous, the same on every node. Default: the trainer config's
``output.runId`` (the FineTuneJob's uid), else ``finetune``."""

RDZV_TIMEOUT_SECONDS = "FINETUNE_RDZV_TIMEOUT_SECONDS"
"""Bound, in seconds, on reaching the rendezvous endpoint and on waiting for all nodes to join:
past it the pod fails with a message that says which. Default ``DEFAULT_RDZV_TIMEOUT_SECONDS``."""

NODE_ADDRESS = "FINETUNE_NODE_ADDRESS"
"""How the other nodes reach this one (``torch.distributed.run --local-addr``). Default: the pod's
fully qualified name, ``<job>-<index>.<service>.<namespace>.svc.<domain>`` when the pod template
sets ``subdomain``. The rendezvous orders nodes by this address, so node 0's sorts first."""

DEFAULT_RDZV_PORT = 29400
DEFAULT_RDZV_TIMEOUT_SECONDS = 600
MAX_NODES = 64
"""The most nodes (pods) one FineTuneJob may span (``resources.nodes``)."""

RANK_FAILURES_DIR = ".rank-failures"
"""Directory in the (shared) output directory where a failing process of a multi-node run writes
its one-line report, so that every node's pod names the same first failure."""


def rendezvous_endpoint(job: str, service: str, port: int = DEFAULT_RDZV_PORT) -> str:
    """Node 0's stable DNS name in an Indexed Job whose pods have ``subdomain: <service>``."""
    return f"{job}-0.{service}:{port}"


def node_env(nnodes: int, endpoint: str, rdzv_id: str, timeout_seconds: int | None = None) -> dict[str, str]:
    """The environment every pod of an ``nnodes``-node run gets (the node rank comes from
    ``JOB_COMPLETION_INDEX``, the processes per node from the GPUs)."""
    env = {NNODES: str(nnodes), RDZV_ENDPOINT: endpoint, RDZV_ID: rdzv_id}
    if timeout_seconds is not None:
        env[RDZV_TIMEOUT_SECONDS] = str(timeout_seconds)
    return env
