"""The launcher: ``finetune-train`` on a pod that runs several processes starts them with
``torch.distributed.run`` and turns their end into one exit code and one termination message.

One node: ``--standalone`` with ``FINETUNE_PROCESSES`` (or one per GPU) processes. Several nodes
(``finetune_api.distributed``): every pod runs the same command, ``--nnodes M --nproc-per-node P``
with a c10d rendezvous hosted by node 0 (``is_host``) at ``FINETUNE_RDZV_ENDPOINT``; the rendezvous
orders the nodes by address, so node 0 (first by name) holds global rank 0. A process that fails
makes every node's ``torch.distributed.run`` end (the others lose it in their next collective;
no restarts here: a retry is a new attempt of the whole run, which resumes from the checkpoint),
and each launcher writes the same first failure, naming its node and rank. The rendezvous is
bounded by ``FINETUNE_RDZV_TIMEOUT_SECONDS``: an endpoint that cannot be reached, or nodes that
never join, end the pod with a message that says so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from finetune_api import distributed as contract
from finetune_api.protocol import EXIT_CODE_REASONS, ExitCode, TrainerSummary

from . import distributed
from .errors import ConfigError

log = logging.getLogger("finetune_trainer")

AGENT_ERROR_ENV = "TORCHELASTIC_ERROR_FILE"
"""Where torch.distributed.run records the exception that ended it (the rendezvous's, say)."""


@dataclass(frozen=True)
class Topology:
    """Where this pod stands in the run: ``nnodes`` x ``processes`` training processes."""

    processes: int = 1
    nnodes: int = 1
    node_rank: int = 0
    endpoint: str = ""
    rdzv_id: str = "finetune"
    timeout: int = contract.DEFAULT_RDZV_TIMEOUT_SECONDS
    node_address: str | None = None

    @property
    def world_size(self) -> int:
        return self.nnodes * self.processes


def where(nnodes: int, node: int, rank: int | None = None, host: str | None = None) -> str:
    """Who failed: ``rank 1`` on one node; ``node 1 (host), rank 1`` or ``node 1`` on several."""
    if nnodes == 1:
        return f"rank {rank}"
    at = f"node {node}" + (f" ({host})" if host else "")
    return at if rank is None else f"{at}, rank {rank}"


def _integer(environ: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"environment variable {name}={raw!r}: expected an integer >= {minimum}")
    return value


def _endpoint(raw: str, nnodes: int) -> str:
    """``host[:port]`` with the port filled in; ConfigError naming the variable otherwise."""
    name = contract.RDZV_ENDPOINT
    if not raw:
        raise ConfigError(
            f"environment variable {name} is required with {contract.NNODES}={nnodes} (node 0's host:port)"
        )
    host, sep, port = raw.rpartition(":")
    if not sep:
        host, port = raw, str(contract.DEFAULT_RDZV_PORT)
    if not host or ":" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"environment variable {name}={raw!r}: expected host:port (port 1-65535)")
    return f"{host}:{port}"


def topology(run_id: str | None, environ: Mapping[str, str] | None = None) -> Topology:
    """This pod's place in the run, from the environment (``finetune_api.distributed``)."""
    env = os.environ if environ is None else environ
    nnodes = _integer(env, contract.NNODES, 1, 1)
    processes = _integer(env, contract.PROCESSES, 0, 1) or distributed.processes_wanted()
    if nnodes == 1:
        return Topology(processes=processes)
    source = contract.NODE_RANK if env.get(contract.NODE_RANK, "").strip() else contract.JOB_COMPLETION_INDEX
    node_rank = _integer(env, source, 0, 0)
    if node_rank >= nnodes:
        raise ConfigError(f"environment variable {source}={node_rank}: expected a node rank 0..{nnodes - 1}")
    return Topology(
        processes=processes,
        nnodes=nnodes,
        node_rank=node_rank,
        endpoint=_endpoint(env.get(contract.RDZV_ENDPOINT, "").strip(), nnodes),
        rdzv_id=env.get(contract.RDZV_ID, "").strip() or run_id or "finetune",
        timeout=_integer(env, contract.RDZV_TIMEOUT_SECONDS, contract.DEFAULT_RDZV_TIMEOUT_SECONDS, 1),
        node_address=env.get(contract.NODE_ADDRESS, "").strip() or None,
    )


def torchrun_command(top: Topology, argv: list[str]) -> list[str]:
    """``python -m torch.distributed.run ... -m finetune_trainer argv`` for this pod."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={top.processes}"]
    if top.nnodes == 1:
        cmd.append("--standalone")
    else:
        conf = f"is_host={str(top.node_rank == 0).lower()},join_timeout={top.timeout},read_timeout={top.timeout}"
        cmd += [
            f"--nnodes={top.nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={top.endpoint}",
            f"--rdzv-id={top.rdzv_id}",
            f"--rdzv-conf={conf}",
            "--max-restarts=0",
        ]
        cmd += [f"--local-addr={top.node_address}"] if top.node_address else []
    return [*cmd, "-m", "finetune_trainer", *argv]


def reports_dir(top: Topology, output_dir: str) -> Path:
    """Where the processes report failures: with several nodes, the shared output directory (this
    node's reports of an earlier attempt removed); on one node, a private temporary directory."""
    if top.nnodes == 1:
        return Path(tempfile.mkdtemp(prefix="finetune-ranks-"))
    reports = Path(output_dir) / contract.RANK_FAILURES_DIR
    for stale in reports.glob(f"node-{top.node_rank}-rank-*.json"):
        stale.unlink(missing_ok=True)
    return reports


def launch(argv: list[str], top: Topology, output_dir: str) -> tuple[int, TrainerSummary | None]:
    """Run ``finetune-train argv`` as this pod's processes; returns (exit code, summary to write as
    the termination message, or None when they succeeded: rank 0 wrote it)."""
    started = time.time()
    reports = reports_dir(top, output_dir)
    private = Path(tempfile.mkdtemp(prefix="finetune-agent-"))
    agent_error = private / "error.json"
    cmd = torchrun_command(top, argv)
    env = dict(
        os.environ,
        **{
            distributed.REPORTS_ENV: str(reports),
            contract.NODE_RANK: str(top.node_rank),
            AGENT_ERROR_ENV: str(agent_error),
        },
    )
    log.info(
        "node %d of %d: %d of %d processes: %s", top.node_rank, top.nnodes, top.processes, top.world_size, " ".join(cmd)
    )
    child = subprocess.Popen(cmd, env=env)
    previous = {
        s: signal.signal(s, lambda signum, _frame: child.send_signal(signum)) for s in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        rc = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    try:
        return (0, None) if rc == 0 else first_failure(reports, rc, top, agent_error, started)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        _drop_reports(reports, top, rc)


def _drop_reports(reports: Path, top: Topology, rc: int) -> None:
    """One node: the private directory goes. Several: after a failure the shared one stays for the
    other nodes to read (the next attempt removes it, node by node, as ``finetune-train cleanup``
    does); after a success it is empty, and removed."""
    if top.nnodes == 1:
        shutil.rmtree(reports, ignore_errors=True)
    elif rc == 0:
        try:
            reports.rmdir()
        except OSError:
            pass  # absent, or another node's reports of an earlier attempt


def _records(reports: Path, since: float) -> list[dict]:
    """The reports written since this launcher started: this attempt's (another node's reports of
    an earlier attempt stay until that node starts again, and are older)."""
    records = []
    for path in reports.glob("node-*-rank-*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("time", 0) >= since:
            records.append(record)
    return records


def first_failure(
    reports: Path, rc: int, top: Topology, agent_error: Path, since: float = 0.0
) -> tuple[int, TrainerSummary]:
    """The cause: the earliest failure, since `since`, of a process that did not merely lose
    another one (the others usually fail because it did); else why ``torch.distributed.run``
    itself ended. Every node's pod names it; only the cause's own node exits with its code, the
    others with PEER_LOST (a Job's podFailurePolicy ignores it: one failure, one retry)."""
    records = _records(reports, since)
    if records:
        first = min(records, key=lambda r: (bool(r.get("peerLost")), r["time"]))
        summary = TrainerSummary.model_validate(first["summary"])
        at = where(top.nnodes, int(first.get("node", 0)), first["rank"], first.get("host"))
        code = int(first["exitCode"])
        if first.get("peerLost") and top.nnodes > 1:  # no process reported a cause: a pod went away
            code, at = int(ExitCode.PEER_LOST), f"{at}: lost a process of another node (that pod was stopped or failed)"
        elif top.nnodes > 1 and int(first.get("node", 0)) != top.node_rank:
            code = int(ExitCode.PEER_LOST)  # the cause is another node's: that pod exits with it, and counts
        message = f"{at}: {summary.message or ''}"[:2048]
        return code, summary.model_copy(update={"message": message})
    message = agent_failure(agent_error, top) or (
        f"a training process ended without a report (torch.distributed.run exit code {rc}: killed, e.g. by the "
        "kernel's OOM killer, or a crash); see the pod log"
    )
    if top.nnodes > 1:
        message = f"{where(top.nnodes, top.node_rank)}: {message}"
    return int(ExitCode.FAILED), TrainerSummary(
        outcome="failed", reason=EXIT_CODE_REASONS[ExitCode.FAILED].value, message=message[:2048]
    )


def _exception_lines(callstack: str) -> list[tuple[str, str]]:
    """(short type name, message) of each exception in a formatted traceback, innermost first."""
    found = re.findall(r"^(?:[\w]+\.)*(\w+(?:Error|Exception|Timeout))(?:: (.*))?$", callstack, re.MULTILINE)
    return [(name, text.strip()) for name, text in found]


def agent_failure(error_file: Path, top: Topology) -> str | None:
    """Why ``torch.distributed.run`` ended before or without its processes: the rendezvous, mostly."""
    try:
        recorded = json.loads(error_file.read_text())["message"]
        callstack = recorded["extraInfo"]["py_callstack"] if isinstance(recorded, dict) else str(recorded)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    errors = _exception_lines(callstack)
    if not errors:
        return None
    names = {name for name, _ in errors}
    inner = next((f"{n}: {t}" for n, t in errors if t and not t.endswith("See inner exception for details.")), "")
    at = f"the rendezvous endpoint {top.endpoint} ({contract.RDZV_ENDPOINT})"
    if "RendezvousConnectionError" in names:
        return f"could not reach {at} within {top.timeout}s: {inner or errors[-1][0]}"
    if "RendezvousTimeoutError" in names:
        return (
            f"not all {top.nnodes} nodes joined the rendezvous at {top.endpoint} within {top.timeout}s "
            f"({contract.RDZV_TIMEOUT_SECONDS}): a node's pod did not start, or cannot reach node 0"
        )
    if "SignalException" in names:  # the pod's SIGTERM, passed on by the launcher
        signum = re.search(r"got signal: (\d+)", callstack)
        name = signal.Signals(int(signum[1])).name if signum else "a signal"
        return f"stopped by {name}: the pod was deleted, evicted or preempted"
    if "RendezvousClosedError" in names:
        return f"the rendezvous {top.rdzv_id} at {top.endpoint} was closed: another node ended the run"
    name, text = errors[-1]
    return f"torch.distributed.run failed: {name}: {text}" if text else f"torch.distributed.run failed: {name}"
