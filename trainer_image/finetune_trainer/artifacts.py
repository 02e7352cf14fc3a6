"""Atomic artifact layout in ``output.dir``.

::

    <dir>/
      .staging-<runid>/      built here first (same volume), removed when published
      checkpoints/           Trainer checkpoints for resuming (last 2); deleted after publishing
      progress.json          latest progress line (not an artifact)
      adapter_model.safetensors adapter_config.json tokenizer files trainer_config.json
      metrics.json eval_report.md loss.png [merged/]
      SHA256SUMS             sha256sum format, over every artifact above
      _COMPLETE              written last: only a directory with it is a finished result

Publishing moves each staged entry into ``<dir>`` with ``os.replace`` (a rename on one volume),
then writes ``SHA256SUMS`` and finally ``_COMPLETE``. A run that dies at any point before that
leaves no ``_COMPLETE``, so nothing half-written looks complete; the next run removes stale
staging directories and overwrites partial artifacts. A run started on a directory that already
has ``_COMPLETE`` does nothing (see the pipeline): it never clobbers a finished result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from .progress import now_rfc3339, write_atomic

COMPLETE_MARKER = "_COMPLETE"
CHECKSUMS = "SHA256SUMS"
STAGING_PREFIX = ".staging-"
CHECKPOINTS = "checkpoints"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class OutputDir:
    def __init__(self, root: str | os.PathLike, run_id: str | None = None):
        self.root = Path(root)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.staging = self.root / f"{STAGING_PREFIX}{self.run_id}"
        self.checkpoints = self.root / CHECKPOINTS

    def is_complete(self) -> bool:
        return (self.root / COMPLETE_MARKER).is_file()

    def prepare(self) -> None:
        """Create the directory and a fresh staging area; drop staging left by crashed runs."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.staging.mkdir()

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def staged_files(self) -> list[Path]:
        return sorted(p for p in self.staging.rglob("*") if p.is_file())

    def publish(self) -> dict:
        """Checksum the staged files, move them into place, then write SHA256SUMS and _COMPLETE."""
        files = self.staged_files()
        for p in files:
            os.chmod(p, 0o644)
        sums = {p.relative_to(self.staging).as_posix(): sha256_file(p) for p in files}
        size = sum(p.stat().st_size for p in files)
        (self.root / COMPLETE_MARKER).unlink(missing_ok=True)
        (self.root / CHECKSUMS).unlink(missing_ok=True)
        for entry in sorted(self.staging.iterdir()):
            target = self.root / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
        stale_merged = self.root / "merged"
        if stale_merged.exists() and not any(k.startswith("merged/") for k in sums):
            shutil.rmtree(stale_merged, ignore_errors=True)
        self.staging.rmdir()
        _fsync_dir(self.root)
        checksums = "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items()))
        write_atomic(self.root / CHECKSUMS, checksums)
        marker = {
            "runId": self.run_id,
            "completedAt": now_rfc3339(),
            "sha256sums": hashlib.sha256(checksums.encode()).hexdigest(),
            "files": len(sums),
            "sizeBytes": size,
        }
        write_atomic(self.root / COMPLETE_MARKER, json.dumps(marker, indent=2) + "\n")
        _fsync_dir(self.root)
        return {"files": sums, "size_bytes": size}

    def remove_checkpoints(self) -> None:
        shutil.rmtree(self.checkpoints, ignore_errors=True)


def verify_checksums(root: str | os.PathLike) -> list[str]:
    """Names whose content no longer matches SHA256SUMS (empty when all match)."""
    root = Path(root)
    bad = []
    for line in (root / CHECKSUMS).read_text().splitlines():
        digest, name = line.split("  ", 1)
        p = root / name
        if not p.is_file() or sha256_file(p) != digest:
            bad.append(name)
    return bad
