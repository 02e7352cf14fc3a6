"""`finetune-train fetch` of s3:// sources from a real S3 server (versitygw, built from its Go module),
through boto3, over TLS verified with the dev cluster's CA: a dataset object and a model directory
(a multipart object among its files), reuse, and each bad input with its own reason."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from finetune_api.protocol import ExitCode
from finetune_devcluster.dataservers import minilm_dir
from support.fetching import fetch_env, leftovers, run_fetch, s3_client

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "log-intent"
TRAIN = (EXAMPLE / "train.jsonl").read_bytes()


@pytest.fixture(scope="module")
def bucket(object_store) -> str:
    """A bucket with the log-intent train.jsonl (with an x-amz-checksum-sha256) and MiniLM's files
    under models/minilm/ (model.safetensors uploaded in 8 MiB parts: a multipart ETag)."""
    name = f"data-{uuid.uuid4().hex[:8]}"
    s3 = s3_client(object_store)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="log-intent/train.jsonl", Body=TRAIN, ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=name, Key="log-intent/corrupt.jsonl", Body=TRAIN)
    from boto3.s3.transfer import TransferConfig

    multipart = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
    for path in sorted(p for p in minilm_dir().rglob("*") if p.is_file()):
        key = f"models/minilm/{path.relative_to(minilm_dir()).as_posix()}"
        s3.upload_file(str(path), name, key, Config=multipart)
    return name


def test_dataset_object_is_downloaded_checked_and_then_reused(object_store, bucket, tmp_path):
    env = fetch_env(object_store, ca=object_store.ca)
    source = f"s3://{bucket}/log-intent/train.jsonl"
    first = run_fetch(tmp_path, env, "--source", source, "--format", "classification", "--method", "classification")
    assert first.code == 0, first.stderr
    record = first.output
    assert (record["cached"], record["bytesDownloaded"], record["file"]) == (False, len(TRAIN), "train.jsonl")
    assert record["sha256"] == hashlib.sha256(TRAIN).hexdigest()
    assert record["verifiedWith"] == "s3-checksum-sha256+s3-etag-md5"
    assert (Path(record["path"]) / "train.jsonl").read_bytes() == TRAIN
    second = run_fetch(tmp_path, env, "--source", source)
    assert second.code == 0, second.stderr
    assert (second.output["cached"], second.output["bytesDownloaded"]) == (True, 0)
    assert second.output["sha256"] == record["sha256"] and second.output["path"] == record["path"]


def test_model_directory_with_a_multipart_object(object_store, bucket, tmp_path):
    env = fetch_env(object_store, ca=object_store.ca)
    result = run_fetch(tmp_path, env, "--source", f"s3://{bucket}/models/minilm/")
    assert result.code == 0, result.stderr
    entry = Path(result.output["path"])
    for path in (p for p in minilm_dir().rglob("*") if p.is_file()):
        assert (entry / path.relative_to(minilm_dir())).read_bytes() == path.read_bytes()
    assert result.output["verifiedWith"] == "s3-etag-md5"  # plain and multipart ETags, no extra checksums
    assert result.output["fileCount"] == len([p for p in minilm_dir().rglob("*") if p.is_file()])


@pytest.mark.parametrize(
    "key, env_change, reason, fragment",
    [
        ("log-intent/train.jsonl", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "SourceForbidden", "access denied"),
        ("log-intent/missing.jsonl", {}, "SourceNotFound", "no such object"),
    ],
)
def test_bad_credentials_and_missing_objects(object_store, bucket, tmp_path, key, env_change, reason, fragment):
    env = fetch_env(object_store, ca=object_store.ca) | env_change
    result = run_fetch(tmp_path, env, "--source", f"s3://{bucket}/{key}")
    assert result.output["reason"] == reason and fragment in result.output["message"], result.output
    assert f"s3://{bucket}/{key}" in result.output["message"]
    assert result.code == ExitCode[_snake(reason)] and leftovers(tmp_path) == []


def test_missing_bucket(object_store, tmp_path):
    env = fetch_env(object_store, ca=object_store.ca)
    result = run_fetch(tmp_path, env, "--source", "s3://no-such-bucket-here/train.jsonl")
    assert (result.code, result.output["reason"]) == (ExitCode.SOURCE_NOT_FOUND, "SourceNotFound")
    assert "the bucket 'no-such-bucket-here' does not exist" in result.output["message"]


def test_object_changed_behind_the_stores_back_is_a_checksum_mismatch(object_store, bucket, tmp_path):
    """The posix backend's file is altered (same size): the bytes no longer match the stored ETag."""
    path = object_store.object_path(bucket, "log-intent/corrupt.jsonl")
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    env = fetch_env(object_store, ca=object_store.ca)
    result = run_fetch(tmp_path, env, "--source", f"s3://{bucket}/log-intent/corrupt.jsonl")
    assert (result.code, result.output["reason"]) == (ExitCode.CHECKSUM_MISMATCH, "ChecksumMismatch"), result.output
    assert "MD5 ETag" in result.output["message"] and leftovers(tmp_path) == []


def test_download_cut_off_halfway_every_time(object_store, bucket, tmp_path):
    env = fetch_env(object_store, ca=object_store.ca) | {"AWS_ENDPOINT_URL": object_store.cutoff_url}
    result = run_fetch(tmp_path, env, "--source", f"s3://{bucket}/log-intent/train.jsonl")
    assert (result.code, result.output["reason"]) == (ExitCode.DOWNLOAD_FAILED, "DownloadFailed")
    assert "broke off 5 times" in result.output["message"] and leftovers(tmp_path) == []


def test_server_certificate_not_trusted_without_the_ca(object_store, bucket, tmp_path):
    env = fetch_env(object_store)  # no FINETUNE_CA_BUNDLE: the dev cluster's CA is not trusted
    result = run_fetch(tmp_path, env, "--source", f"s3://{bucket}/log-intent/train.jsonl")
    assert (result.code, result.output["reason"]) == (ExitCode.DOWNLOAD_FAILED, "DownloadFailed")
    assert "certificate" in result.output["message"].lower()


def _snake(reason: str) -> str:
    return "".join(f"_{c}" if c.isupper() else c for c in reason).lstrip("_").upper()
