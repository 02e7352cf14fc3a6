"""`finetune-train fetch`: a model or dataset from S3, https:// or the Hub into a destination, once.

    finetune-train fetch --source SRC --into DIR [--kind model|dataset] [--revision REV] [--sha256 HEX]
                         [--format FMT [--method M]] [--lock-timeout S] [--termination-message-path P]

The destination DIR is a directory shared by every fetch of it (a cache claim mounted by several pods,
on one node or, ReadWriteMany, several), laid out as:

    DIR/<entry>/                       a complete, verified entry; <entry> = fetch_entry_name(source,
                                       revision, sha256) (finetune_api.protocol), never changed again
    DIR/<entry>/.finetune-fetch.json   its FetchRecord, with every file's size and SHA-256
    DIR/.locks/<entry>.lock            the POSIX lock (fcntl.lockf) of the fetch downloading <entry>
    DIR/.tmp/<entry>.<random>/         a download in progress

A fetch that finds DIR/<entry> with its record (and every file at the recorded size) reuses it and
downloads nothing. Otherwise it takes the entry's lock, waiting (at most --lock-timeout seconds) while
another fetch holds it, and looks again: the other fetch's result is reused. The holder removes what
crashed holders left in DIR/.tmp for this entry, downloads into a new temporary directory, checks
every byte (see downloads, s3 and hub), validates a dataset with the trainer's reader when --format
is given, writes the record, and renames the directory to DIR/<entry>. The kernel (or, on NFS, the
lock lease) releases the lock of a holder that died, and its half-written directory is never an
entry. Any failure removes the temporary directory; SIGTERM does too.

Prints the FetchRecord (without the file list) as one JSON line and writes it to the termination
message; a failure writes a TrainerSummary with its reason and exits with its ExitCode.

Trust: FINETUNE_CA_BUNDLE names a PEM file of extra CAs (e.g. a cluster's own CA); they are added to
the system's for every client (SSL_CERT_FILE, REQUESTS_CA_BUNDLE and AWS_CA_BUNDLE point at the union).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from finetune_api.protocol import FETCH_RECORD_FILE, FetchRecord, fetch_entry_name
from finetune_api.training import DatasetFormat, Method

from .data import read_records
from .downloads import Fetched, https_file
from .errors import CacheFullError, ChecksumMismatchError, DownloadFailedError
from .formats import formats_of

log = logging.getLogger("finetune_trainer")

LOCK_POLL_SECONDS = 0.5
LOCK_LOG_SECONDS = 30.0


@dataclass(frozen=True)
class FetchRequest:
    source: str
    kind: str = "dataset"  # or "model"
    revision: str | None = None
    sha256: str | None = None
    format: DatasetFormat | None = None
    """Validate a dataset with the trainer's reader (file:line messages) before it becomes an entry."""
    method: Method | None = None
    """With `format`: refuse records the method cannot train on."""

    @property
    def entry(self) -> str:
        return fetch_entry_name(self.source, self.revision, self.sha256)


def fetch(request: FetchRequest, into: Path, lock_timeout: float = 7200.0) -> FetchRecord:
    """Put `request` at `into/<entry>` (or find it there); see the module doc for the protocol."""
    t0 = time.monotonic()
    entry = into / request.entry
    if (record := reuse(entry, request)) is not None:
        return _reused(record, t0)
    for sub in (".locks", ".tmp"):
        (into / sub).mkdir(parents=True, exist_ok=True)
    with entry_lock(into / ".locks" / f"{request.entry}.lock", lock_timeout, request.source):
        if (record := reuse(entry, request)) is not None:
            return _reused(record, t0)  # another fetch made it while this one waited
        for stale in (into / ".tmp").glob(f"{request.entry}.*"):
            log.info("removing %s, left by a fetch that did not finish", stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{request.entry}.", dir=into / ".tmp"))
        try:
            got = download(request, tmp)
            if request.format is not None and got.data_file:
                allowed = formats_of(request.method) if request.method else None
                read_records(tmp / got.data_file, request.format, allowed)
            record = make_record(request, entry, got, time.monotonic() - t0)
            write_record(tmp, record)
            os.rename(tmp, entry)
            _fsync_dir(into)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing left after the rename
    log.info("fetched %s into %s: %d bytes in %.1fs", request.source, entry, record.bytes_downloaded, record.seconds)
    return record


def _reused(record: FetchRecord, t0: float) -> FetchRecord:
    return record.model_copy(update={"cached": True, "bytes_downloaded": 0, "seconds": round(time.monotonic() - t0, 3)})


def download(request: FetchRequest, into: Path) -> Fetched:
    src = request.source
    if src.startswith("https://"):
        if not request.sha256:
            raise DownloadFailedError(f"{src}: an https:// source needs its sha256 (--sha256)")
        return https_file(src, request.sha256, into)
    if src.startswith("s3://"):
        from .s3 import S3Source

        s3 = S3Source(src)
        return s3.directory(into) if request.kind == "model" else s3.object(into)
    if src.startswith("hf://"):
        from .hub import fetch_hub

        return fetch_hub(src, request.revision, into)
    raise DownloadFailedError(f"{src}: not a downloadable source (s3://, https:// or hf://)")


def make_record(request: FetchRequest, entry: Path, got: Fetched, seconds: float) -> FetchRecord:
    files = sorted(got.files, key=lambda f: f.path)
    if got.data_file:
        digest = next(f.sha256 for f in files if f.path == got.data_file)
    else:  # a directory: the SHA-256 of its `sha256sum` listing
        listing = "".join(f"{f.sha256}  {f.path}\n" for f in files)
        digest = hashlib.sha256(listing.encode()).hexdigest()
    return FetchRecord(
        source=request.source,
        revision=request.revision,
        commit=got.commit,
        path=str(entry),
        file=got.data_file,
        file_count=len(files),
        size_bytes=sum(f.size_bytes for f in files),
        sha256=digest,
        verified_with=got.verified_with,
        bytes_downloaded=got.bytes_downloaded,
        seconds=round(seconds, 3),
        cached=False,
        files=files,
    )


def write_record(directory: Path, record: FetchRecord) -> None:
    """The record, then the directory, flushed to disk before the rename makes the entry visible."""
    try:
        path = directory / FETCH_RECORD_FILE
        path.write_text(record.model_dump_json(by_alias=True, exclude_none=True, indent=1))
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        _fsync_dir(directory)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CacheFullError(f"no space left on the volume of {directory.parent} for the fetch record") from None
        raise


def reuse(entry: Path, request: FetchRequest) -> FetchRecord | None:
    """The record of a complete entry (None when there is none); an entry that does not match its record
    (touched behind the fetch's back) is an error naming it."""
    path = entry / FETCH_RECORD_FILE
    if not entry.is_dir():
        return None
    try:
        record = FetchRecord.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        raise ChecksumMismatchError(
            f"cache entry {entry} has no valid record ({exc.__class__.__name__}): remove it"
        ) from None
    if record.source != request.source or record.revision != request.revision:
        raise ChecksumMismatchError(f"cache entry {entry} records {record.source}@{record.revision}: remove it")
    for file in record.files or []:
        size = (entry / file.path).stat().st_size if (entry / file.path).is_file() else None
        if size != file.size_bytes:
            raise ChecksumMismatchError(
                f"cache entry {entry}: {file.path} has {size} bytes, its record says {file.size_bytes}: "
                "remove the entry"
            )
    return record.model_copy(update={"path": str(entry), "files": None})


@contextlib.contextmanager
def entry_lock(path: Path, timeout: float, source: str) -> Iterator[None]:
    """Hold the POSIX lock on `path`, waiting at most `timeout` seconds for the fetch that holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        t0 = time.monotonic()
        next_log = t0  # said at once, then every LOCK_LOG_SECONDS
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
            now = time.monotonic()
            holder = _holder(path)
            if now - t0 > timeout:
                raise DownloadFailedError(f"{source}: another fetch ({holder}) still holds it after {timeout:.0f}s")
            if now >= next_log:
                log.info("waiting for another fetch of %s (%s), %.0fs so far", source, holder, now - t0)
                next_log = now + LOCK_LOG_SECONDS
            time.sleep(LOCK_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "holder unknown"
    except OSError:
        return "holder unknown"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def trust_extra_cas() -> None:
    """Add the CAs of FINETUNE_CA_BUNDLE to the system's, for urllib, boto3 and huggingface_hub alike."""
    extra = os.environ.get("FINETUNE_CA_BUNDLE")
    if not extra:
        return
    paths = ssl.get_default_verify_paths()
    system = next((p for p in (paths.cafile, paths.openssl_cafile) if p and os.path.isfile(p)), None)
    if system is None:
        import certifi

        system = certifi.where()
    bundle = Path(tempfile.mkdtemp(prefix="finetune-ca-")) / "ca-bundle.pem"
    bundle.write_text(Path(system).read_text() + "\n" + Path(extra).read_text())
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE"):
        os.environ[var] = str(bundle)
