"""Several GPUs in one pod: one data-parallel (DDP) process per GPU.

``finetune-train`` started where it sees more than one GPU (``resources.gpus: N``) relaunches
itself under ``torch.distributed.run`` with N workers, so the operator's Job stays one container
with one command. Each worker loads the (4-bit) model on its own GPU and trains on its share of
every batch; the global batch is ``batchSize x gradientAccumulationSteps x N``.

Rank 0 alone reports progress, evaluates, and writes checkpoints' run state, artifacts and the
termination message. A worker that fails writes its summary to a per-rank file; the launcher
(this process) waits for ``torch.distributed.run`` and writes the summary of the first worker
that failed as the termination message, with its exit code. ``FINETUNE_PROCESSES`` overrides the
number of processes (the CI runs two CPU processes over gloo).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from finetune_api.protocol import EXIT_CODE_REASONS, ExitCode, TrainerSummary

log = logging.getLogger("finetune_trainer")

PROCESSES_ENV = "FINETUNE_PROCESSES"
REPORTS_ENV = "FINETUNE_RANK_REPORTS"
"""Directory where each worker that fails writes ``rank-<k>.json`` (set by the launcher)."""


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


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
    record = {"rank": rank(), "time": time.time(), "exitCode": code, "summary": summary.to_wire()}
    try:
        Path(where, f"rank-{rank()}.json").write_text(json.dumps(record))
    except OSError as exc:
        log.warning("cannot write the failure report of rank %d: %s", rank(), exc)


def launch(argv: list[str], processes: int) -> tuple[int, TrainerSummary | None]:
    """Run ``finetune-train argv`` as ``processes`` workers; returns (exit code, summary to write
    as the termination message, or None when rank 0 wrote it)."""
    reports = tempfile.mkdtemp(prefix="finetune-ranks-")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "finetune_trainer",
        *argv,
    ]
    env = dict(os.environ, **{REPORTS_ENV: reports})
    log.info("%d processes (one per GPU): %s", processes, " ".join(cmd))
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
        if rc == 0:
            return 0, None
        return first_failure(Path(reports), rc)
    finally:
        shutil.rmtree(reports, ignore_errors=True)


def first_failure(reports: Path, rc: int) -> tuple[int, TrainerSummary]:
    """The earliest worker failure: the others usually fail because it did (or are stopped for it)."""
    records = []
    for path in reports.glob("rank-*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    if records:
        first = min(records, key=lambda r: r["time"])
        summary = TrainerSummary.model_validate(first["summary"])
        message = f"rank {first['rank']}: {summary.message or ''}"[:2048]
        return int(first["exitCode"]), summary.model_copy(update={"message": message})
    message = (
        f"a training process ended without a report (torch.distributed.run exit code {rc}: killed, e.g. by the "
        "kernel's OOM killer, or a crash); see the pod log"
    )
    return int(ExitCode.FAILED), TrainerSummary(
        outcome="failed", reason=EXIT_CODE_REASONS[ExitCode.FAILED].value, message=message
    )
