"""Objects and model directories from S3-compatible object stores (boto3), checked as they arrive.

A dataset is one object (`s3://bucket/key`), a model directory every object under a prefix
(`s3://bucket/prefix/`). Each object's bytes are checked against what the store says about them:
its full-object x-amz-checksum-sha256 when it has one, and its ETag when that is an MD5 (a plain
upload, or `<md5 of the parts' md5s>-<parts>` for a multipart one; not for SSE-KMS/SSE-C objects,
whose ETag is not an MD5), always its size. A download that breaks off is resumed with a Range
request pinned to the ETag (If-Match), so an object replaced meanwhile fails instead of mixing.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path, PurePosixPath
from typing import Any

from finetune_api.protocol import FetchedFile

from .downloads import CHUNK, TIMEOUT, Fetched, HashingFile, free_space_check, stream
from .errors import ChecksumMismatchError, DownloadFailedError, SourceForbiddenError, SourceNotFoundError

FORBIDDEN_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "403", "401"}
NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


def parse_s3(source: str) -> tuple[str, str]:
    bucket, _, key = source.removeprefix("s3://").partition("/")
    return bucket, key


def client() -> Any:
    """A boto3 S3 client from the environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (unsigned requests
    without them), AWS_ENDPOINT_URL (path-style addressing for it), AWS_REGION, AWS_CA_BUNDLE."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    signed = bool(os.environ.get("AWS_ACCESS_KEY_ID"))
    config = Config(
        region_name=region,
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": "path" if endpoint else "auto"},
        connect_timeout=20,
        read_timeout=TIMEOUT,
        response_checksum_validation="when_required",  # checked here, resumed downloads included
        **({} if signed else {"signature_version": UNSIGNED}),
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


class S3Source:
    """One s3:// source and the client that reads it; every call maps the store's errors to ours."""

    def __init__(self, source: str, s3: Any | None = None) -> None:
        self.source = source
        self.bucket, self.key = parse_s3(source)
        self.s3 = s3 if s3 is not None else client()

    def object(self, into: Path) -> Fetched:
        """A dataset: the one object `key`, as `into/<its file name>`."""
        name = PurePosixPath(self.key).name
        head = self._call("head_object", self.key, Bucket=self.bucket, Key=self.key, ChecksumMode="ENABLED")
        free_space_check(into, head["ContentLength"], self.source)
        file, checks = self._download(self.key, head, into / name)
        return Fetched([file], checks, file.size_bytes, data_file=name)

    def directory(self, into: Path) -> Fetched:
        """A model: every object under the prefix `key/`, at its path below the prefix."""
        prefix = self.key.rstrip("/") + "/" if self.key.strip("/") else ""
        objects = self._list(prefix)
        if not objects:
            raise SourceNotFoundError(f"{self.source}: no objects under s3://{self.bucket}/{prefix}")
        free_space_check(into, sum(size for _, size in objects), self.source)
        files, checks = [], set()
        for key, _ in objects:
            head = self._call("head_object", key, Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            rel = _relative(key, prefix, self.source)
            file, check = self._download(key, head, into / rel)
            files.append(file.model_copy(update={"path": rel}))
            checks.add(check)
        return Fetched(files, "+".join(sorted(checks)), sum(f.size_bytes for f in files))

    def _list(self, prefix: str) -> list[tuple[str, int]]:
        pages = self._call("get_paginator", prefix, "list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        try:
            return [
                (o["Key"], o["Size"]) for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")
            ]
        except Exception as exc:  # noqa: BLE001 - the paginator raises the client's errors lazily
            raise self._error(exc, prefix) from None

    def _download(self, key: str, head: dict[str, Any], path: Path) -> tuple[FetchedFile, str]:
        etag = head["ETag"]
        parts = _etag_parts(etag)
        sizes = (
            [
                self._call("head_object", key, Bucket=self.bucket, Key=key, PartNumber=n)["ContentLength"]
                for n in range(1, parts + 1)
            ]
            if parts
            else []
        )
        out = HashingFile(path, sizes)

        def open_from(offset: int) -> tuple[Any, bool]:
            extra = {"Range": f"bytes={offset}-"} if offset else {}
            body = self._call("get_object", key, Bucket=self.bucket, Key=key, IfMatch=etag, **extra)
            return body["Body"].iter_chunks(CHUNK), bool(body.get("ContentRange")) or not offset

        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError as Urllib3Error

        stream(
            open_from, out, head["ContentLength"], f"s3://{self.bucket}/{key}", (BotoCoreError, Urllib3Error, OSError)
        )
        file = out.close()
        return file, self._verify(key, head, out, file)

    def _verify(self, key: str, head: dict[str, Any], out: HashingFile, file: FetchedFile) -> str:
        where, checks = f"s3://{self.bucket}/{key}", []
        want_sha = head.get("ChecksumSHA256") if head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT" else None
        if want_sha:
            got = base64.b64encode(out.sha256.digest()).decode()
            if got != want_sha:
                raise ChecksumMismatchError(
                    f"{where}: sha256 of the bytes is {got}, the store's checksum is {want_sha}"
                )
            checks.append("s3-checksum-sha256")
        etag = head["ETag"].strip('"')
        if not head.get("SSEKMSKeyId") and not head.get("SSECustomerAlgorithm") and _md5_etag(etag):
            got = out.multipart_etag() if "-" in etag else out.md5.hexdigest()
            if got != etag:
                raise ChecksumMismatchError(f"{where}: the bytes' MD5 ETag is {got}, the store's ETag is {etag}")
            checks.append("s3-etag-md5")
        return "+".join(checks) or "size"

    def _call(self, method: str, key: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.s3, method)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped below; unknown ones re-raised
            raise self._error(exc, key) from None

    def _error(self, exc: Exception, key: str) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{key}"
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in FORBIDDEN_CODES or status in (401, 403):
                return SourceForbiddenError(f"{where}: access denied ({code or status}): check the credentials Secret")
            if code == "NoSuchBucket" or (code in NOT_FOUND_CODES and not self._bucket_exists()):
                return SourceNotFoundError(f"{where}: the bucket {self.bucket!r} does not exist")
            if code in NOT_FOUND_CODES:
                return SourceNotFoundError(f"{where}: no such object")
            if code in ("PreconditionFailed", "412"):
                return DownloadFailedError(f"{where}: the object changed during the download")
            return DownloadFailedError(f"{where}: the store answered {status} {code}")
        if isinstance(exc, BotoCoreError):
            return DownloadFailedError(f"{where}: {str(exc).splitlines()[0][:300]}")
        return exc

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return str(exc.response.get("Error", {}).get("Code")) not in NOT_FOUND_CODES
        return True


def _etag_parts(etag: str) -> int:
    tail = etag.strip('"').rpartition("-")[2]
    return int(tail) if "-" in etag and tail.isdigit() else 0


def _md5_etag(etag: str) -> bool:
    head, _, parts = etag.partition("-")
    return len(head) == 32 and all(c in "0123456789abcdef" for c in head) and (not parts or parts.isdigit())


def _relative(key: str, prefix: str, source: str) -> str:
    """The object's path below the prefix, refused when it could leave the entry directory."""
    rel = key[len(prefix) :]
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise DownloadFailedError(f"{source}: object key {key!r} is not a safe file path ('', '.' or '..' segments)")
    return rel
