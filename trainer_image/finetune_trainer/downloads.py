"""Downloads from https:// URLs (and the streaming that :mod:`.s3` shares), hashed while they are written.

A broken connection (cut off, reset, timed out) is resumed with a Range request from the bytes
already on disk, at most ATTEMPTS times; a server that ignores the range starts the file again.
Every other failure is one TrainerError naming the source: SourceNotFoundError (404, no such
bucket or key), SourceForbiddenError (401/403), DownloadFailedError (connection, TLS, server
errors), CacheFullError (no space left on the destination), ChecksumMismatchError (the bytes differ
from the expected sha256, the object's x-amz-checksum-sha256 or its MD5 ETag). Used by
:mod:`finetune_trainer.fetch`, which owns the destination and its temporary directory.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_api.protocol import FetchedFile

from .errors import (
    CacheFullError,
    ChecksumMismatchError,
    DownloadFailedError,
    SourceForbiddenError,
    SourceNotFoundError,
)

log = logging.getLogger("finetune_trainer")

CHUNK = 1 << 20
ATTEMPTS = 5
TIMEOUT = 60.0


class Incomplete(Exception):
    """The body ended before its Content-Length: the connection was cut."""


@dataclass
class Fetched:
    """What a downloader put into the temporary directory."""

    files: list[FetchedFile]
    verified_with: str
    bytes_downloaded: int
    commit: str | None = None
    data_file: str | None = None


@dataclass
class HashingFile:
    """A file being written, with its SHA-256, MD5 and (for multipart S3 ETags) the MD5 of each part."""

    path: Path
    part_sizes: list[int] = field(default_factory=list)
    size: int = 0

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.reset()

    def reset(self) -> None:
        self.file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self.size, self.sha256, self.md5 = 0, hashlib.sha256(), hashlib.md5()
        self.part_md5s: list[bytes] = []
        self.part, self.part_left = hashlib.md5(), self.part_sizes[0] if self.part_sizes else 0

    def write(self, chunk: bytes) -> None:
        try:
            self.file.write(chunk)
        except OSError as exc:
            raise _space_error(exc, self.path) from None
        self.size += len(chunk)
        self.sha256.update(chunk)
        self.md5.update(chunk)
        while self.part_sizes and chunk:
            head, chunk = chunk[: self.part_left], chunk[self.part_left :]
            self.part.update(head)
            self.part_left -= len(head)
            if self.part_left == 0 and len(self.part_md5s) < len(self.part_sizes):
                self.part_md5s.append(self.part.digest())
                done = len(self.part_md5s)
                self.part, self.part_left = hashlib.md5(), self.part_sizes[done] if done < len(self.part_sizes) else 0

    def close(self) -> FetchedFile:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        except OSError as exc:
            raise _space_error(exc, self.path) from None
        return FetchedFile(path=self.path.name, size_bytes=self.size, sha256=self.sha256.hexdigest())

    def multipart_etag(self) -> str:
        return f"{hashlib.md5(b''.join(self.part_md5s)).hexdigest()}-{len(self.part_md5s)}"


def _space_error(exc: OSError, path: Path) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CacheFullError(f"no space left on the volume of {path.parent} while writing {path.name}")
    return exc


Opener = Callable[[int], tuple[Iterable[bytes], bool]]
"""Opens the body from a byte offset: its chunks, and whether the server honoured the offset."""


def stream(
    open_from: Opener, out: HashingFile, size: int | None, label: str, transient: tuple[type[BaseException], ...]
) -> None:
    """Write the body into `out`, resuming after `transient` errors (or a short body) up to ATTEMPTS times."""
    last: BaseException | None = None
    retry: tuple[type[BaseException], ...] = (Incomplete, *transient)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            chunks, resumed = open_from(out.size)
            if out.size and not resumed:
                out.file.close()
                out.reset()
            for chunk in chunks:
                out.write(chunk)
            if size is None or out.size == size:
                return
            raise Incomplete(f"{out.size} of {size} bytes")
        except retry as exc:
            last = exc
            log.warning(
                "%s: download broke off (attempt %d of %d, %d bytes so far): %s",
                label,
                attempt,
                ATTEMPTS,
                out.size,
                exc,
            )
    raise DownloadFailedError(
        f"{label}: the download broke off {ATTEMPTS} times ({out.size} of {size or '?'} bytes): {_one_line(last)}"
    )


def _one_line(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def free_space_check(root: Path, needed: int, label: str) -> None:
    """Refuse a download that cannot fit before starting it."""
    free = _free_bytes(root)
    if needed > free:
        raise CacheFullError(f"{label} needs {needed} bytes, {root} has {free} free")


def _free_bytes(root: Path) -> int:
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


# --- https:// -------------------------------------------------------------------------------------


def https_file(url: str, sha256: str, into: Path) -> Fetched:
    """Download one file from an https:// URL and check it against `sha256`."""
    name = _file_name(urllib.parse.urlsplit(url).path)
    first = _open(url, 0)  # GET only: a presigned URL signs one method
    length = first.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() else None
    if size is not None:
        free_space_check(into, size, _public(url))
    pending = [first]

    def open_from(offset: int) -> tuple[Iterable[bytes], bool]:
        response = pending.pop() if pending and not offset else _open(url, offset)
        return iter(lambda: response.read(CHUNK), b""), response.status == 206

    out = HashingFile(into / name)
    stream(open_from, out, size, _public(url), (OSError, http.client.HTTPException))
    file = out.close()
    if file.sha256 != sha256:
        raise ChecksumMismatchError(f"{_public(url)}: sha256 is {file.sha256}, the spec says {sha256}")
    return Fetched([file], "sha256", file.size_bytes, data_file=name)


def _open(url: str, offset: int) -> Any:
    headers = {"User-Agent": "finetune-train", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        raise _http_error(url, exc.code, exc.reason) from None
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else exc
        raise DownloadFailedError(f"{_public(url)}: cannot connect: {_one_line(reason)}") from None


def _public(url: str) -> str:
    """The URL without its query (a presigned URL's query is a credential)."""
    return url.split("?", 1)[0]


def _http_error(url: str, code: int, reason: object) -> Exception:
    where = _public(url)
    if code in (404, 410):
        return SourceNotFoundError(f"{where}: {code} {reason}: no such file")
    if code in (401, 403):
        return SourceForbiddenError(f"{where}: {code} {reason}: the server refused access")
    return DownloadFailedError(f"{where}: the server answered {code} {reason}")


def _file_name(path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.rstrip("/").rsplit("/", 1)[-1]).strip("-.")
    return name or "data.jsonl"
