"""Which run owns an output directory, and what it wrote there.

A run (a FineTuneJob, identified by its uid) claims its output directory before writing anything:
``_RUN`` records its id and owner. From then on the directory is that run's:

* the same run again (a retried pod, a resumed suspension) continues: resumes its checkpoints,
  or reports its finished result;
* another run refuses it (OutputExists) unless told to replace that run's result, which removes
  only the files the other run wrote;
* ``finetune-train cleanup`` (``output.retention: Delete``) removes the files of one run only, and
  nothing when the directory belongs to another run.

What a run wrote: the artifacts listed in its ``SHA256SUMS`` plus its bookkeeping (``_RUN``,
``_COMPLETE``, ``SHA256SUMS``, ``progress.json``, ``checkpoints/``, ``.rank-failures/`` of a
multi-node run, staging directories). Other
files in the directory (say the training data, when the output path is next to it) are never
touched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from finetune_api.distributed import RANK_FAILURES_DIR

from .artifacts import CHECKPOINTS, CHECKSUMS, COMPLETE_MARKER, STAGING_PREFIX
from .errors import OutputExistsError
from .progress import now_rfc3339, write_atomic

RUN_RECORD = "_RUN"
PROGRESS_FILE = "progress.json"
LOCAL_RUN = "local"
"""The id of runs started without one (``finetune-train`` on a workstation): they share a directory."""
BOOKKEEPING = (RUN_RECORD, COMPLETE_MARKER, CHECKSUMS, PROGRESS_FILE, CHECKPOINTS, RANK_FAILURES_DIR)
# Names a run writes whose presence, in a directory no run has claimed, means someone's result.
RESULT_NAMES = (
    COMPLETE_MARKER,
    CHECKSUMS,
    CHECKPOINTS,
    "adapter_model.safetensors",
    "adapter_config.json",
    "metrics.json",
)


def read(root: str | os.PathLike) -> dict[str, Any] | None:
    """The run record of ``root``, or None when no run has claimed it (or the record is unreadable)."""
    try:
        record = json.loads((Path(root) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("runId"), str) else None


def _describe(root: Path, record: dict[str, Any] | None) -> str:
    if record is None:
        return "a result that no recorded run owns"
    owner = f" (FineTuneJob {record['owner']})" if record.get("owner") else ""
    if (root / COMPLETE_MARKER).exists():
        return f"the result of run {record['runId']}{owner}"
    return f"the partial output of run {record['runId']}{owner}, which did not finish (no result in it)"


def claim(root: str | os.PathLike, run_id: str | None, owner: str | None = None, replace: bool = False) -> None:
    """Make ``root`` this run's output directory, or raise OutputExistsError naming whose it is."""
    root = Path(root)
    run_id = run_id or LOCAL_RUN
    record = read(root)
    if record is not None and record["runId"] == run_id:
        return  # this run, again
    taken = record is not None or any((root / name).exists() for name in RESULT_NAMES)
    if taken and not replace:
        raise OutputExistsError(
            f"the output directory {root} holds {_describe(root, record)}; set output.replace: true to take the "
            "directory over (only that run's files are removed), or write to another output.path"
        )
    if taken:
        remove_run_files(root)
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(
        root / RUN_RECORD, json.dumps({"runId": run_id, "owner": owner, "claimedAt": now_rfc3339()}, indent=2) + "\n"
    )


def wait_for_claim(root: str | os.PathLike, run_id: str | None, timeout: float = 600.0) -> None:
    """Block until ``root`` is claimed by ``run_id`` (another process of the same run claims it);
    OutputExistsError if that does not happen in ``timeout`` seconds (that process failed)."""
    run_id = run_id or LOCAL_RUN
    deadline = time.monotonic() + timeout
    while (read(root) or {}).get("runId") != run_id:
        if time.monotonic() > deadline:
            raise OutputExistsError(
                f"the output directory {root} was not claimed by run {run_id} within {timeout:.0f}s"
            )
        time.sleep(0.2)


def written_files(root: Path) -> list[Path]:
    """What the run that owns ``root`` wrote there: its published artifacts and its bookkeeping."""
    paths = [root / name for name in BOOKKEEPING] + list(root.glob(f"{STAGING_PREFIX}*"))
    try:
        for line in (root / CHECKSUMS).read_text().splitlines():
            name = line.split("  ", 1)[1] if "  " in line else ""
            if name and not Path(name).is_absolute() and ".." not in Path(name).parts:
                paths.append(root / name)
    except OSError:
        pass
    return [p for p in paths if p.exists() or p.is_symlink()]


def remove_run_files(root: Path) -> tuple[int, int]:
    """Delete what the owning run wrote (files, then directories left empty); (files, bytes) removed."""
    files = bytes_ = 0
    for path in sorted(written_files(root), key=lambda p: p.name == RUN_RECORD):  # the claim goes last
        if path.is_dir() and not path.is_symlink():
            for f in path.rglob("*"):
                if f.is_file():
                    files, bytes_ = files + 1, bytes_ + f.stat().st_size
            shutil.rmtree(path)
        else:
            files, bytes_ = files + 1, bytes_ + path.lstat().st_size
            path.unlink()
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()
    return files, bytes_


def cleanup(root: str | os.PathLike, run_id: str) -> dict[str, str]:
    """Remove what run ``run_id`` wrote to ``root``; keep everything when the directory is another
    run's. Returns ``{"outcome": removed|kept|nothing, "message": ...}``."""
    root = Path(root)
    record = read(root)
    if not root.exists() or (record is None and not any((root / n).exists() for n in RESULT_NAMES)):
        return {"outcome": "nothing", "message": f"{root} holds nothing of run {run_id}"}
    if record is None or record["runId"] != run_id:
        return {"outcome": "kept", "message": f"kept {root}: it holds {_describe(root, record)}, not run {run_id}'s"}
    files, size = remove_run_files(root)
    if root.exists() and not any(root.iterdir()):
        root.rmdir()
    left = f"; other files in {root} were kept" if root.exists() else ""
    return {
        "outcome": "removed",
        "message": f"removed {files} files ({size / 1e6:.1f} MB) of run {run_id} from {root}{left}",
    }
