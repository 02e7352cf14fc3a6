"""The pure parts of `finetune-train fetch`: entry names, Hub source parsing and split files, the
hashing file (S3's multipart ETag), resuming a broken stream, unsafe object keys, the reuse check of an
entry, the extra CA bundle. The downloads themselves are tested against real servers in
tests/integration/fetch."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from finetune_api.protocol import FETCH_RECORD_FILE, FetchedFile, fetch_entry_name
from finetune_trainer.cli import default_kind
from finetune_trainer.downloads import ATTEMPTS, HashingFile, stream
from finetune_trainer.errors import ChecksumMismatchError, DownloadFailedError
from finetune_trainer.fetch import Fetched, FetchRequest, make_record, reuse, trust_extra_cas, write_record
from finetune_trainer.hub import parse_hub, split_files
from finetune_trainer.s3 import _etag_parts, _md5_etag, _relative


def test_entry_names_are_safe_readable_and_distinct_per_revision_and_sha256():
    name = fetch_entry_name("hf://org/Model-7B", "main")
    assert name.startswith("org-Model-7B@main-") and len(name.rsplit("-", 1)[1]) == 16
    assert fetch_entry_name("hf://org/Model-7B", "main") == name
    others = {fetch_entry_name("hf://org/Model-7B", "v2"), fetch_entry_name("hf://org/Model-7B", None)}
    others |= {
        fetch_entry_name("https://x.example/a.jsonl", None, "0" * 64),
        fetch_entry_name("https://x.example/a.jsonl"),
    }
    assert name not in others and len(others) == 4
    weird = fetch_entry_name("s3://b/" + "../" * 40 + "x y/z", "refs/pr/1")
    assert all(c.isalnum() or c in "._-@" for c in weird) and len(weird) < 160 and not weird.startswith(".")


def test_hub_sources_and_kinds():
    assert parse_hub("hf://org/name") == ("model", "org/name", None)
    assert parse_hub("hf://datasets/org/name/data/train-00000-of-00002.jsonl") == (
        "dataset",
        "org/name",
        "data/train-00000-of-00002.jsonl",
    )
    assert [default_kind(s) for s in ("hf://o/n", "hf://datasets/o/n/train", "s3://b/m/", "s3://b/t.jsonl")] == [
        "model",
        "dataset",
        "model",
        "dataset",
    ]


def test_split_files_follow_the_hubs_naming_in_name_order():
    paths = [
        "README.md",
        "data/train-00001-of-00002.jsonl",
        "data/train-00000-of-00002.jsonl",
        "data/validation-00000-of-00001.jsonl",
        "data/train-00000-of-00001.parquet",
        "training.jsonl",
        "test/part1.jsonl",
        "train.jsonl",
    ]
    assert split_files(paths, "train") == [
        "data/train-00000-of-00002.jsonl",
        "data/train-00001-of-00002.jsonl",
        "train.jsonl",
    ]
    assert split_files(paths, "test") == ["test/part1.jsonl"]
    assert split_files(paths, "valid") == []


def test_hashing_file_computes_s3s_multipart_etag(tmp_path):
    parts = [b"a" * 10, b"b" * 10, b"c" * 5]
    out = HashingFile(tmp_path / "f", [10, 10, 5])
    for chunk in (b"a" * 7, b"a" * 3 + b"b" * 9, b"b" + b"c" * 5):  # chunks across the part boundaries
        out.write(chunk)
    file = out.close()
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert out.multipart_etag() == expected
    assert file == FetchedFile(path="f", size_bytes=25, sha256=hashlib.sha256(b"".join(parts)).hexdigest())
    assert (_etag_parts('"' + expected + '"'), _etag_parts('"abc"')) == (3, 0)
    assert _md5_etag(expected) and _md5_etag("0" * 32) and not _md5_etag("kms-style-etag")


def _opener(body: bytes, cuts: list[int], honour_range: bool = True):
    """Serve `body`; the n-th response stops after cuts[n] bytes (raising ConnectionResetError)."""
    calls: list[int] = []

    def open_from(offset: int):
        calls.append(offset)
        start = offset if honour_range else 0
        stop = cuts[len(calls) - 1] if len(calls) <= len(cuts) else len(body)

        def chunks():
            yield body[start:stop]
            if stop < len(body):
                raise ConnectionResetError("cut")

        return chunks(), honour_range or not offset

    return open_from, calls


def test_stream_resumes_where_the_connection_broke(tmp_path):
    body = bytes(range(256)) * 100
    open_from, calls = _opener(body, [1000, 5000])
    out = HashingFile(tmp_path / "f")
    stream(open_from, out, len(body), "src", (OSError,))
    assert out.close().sha256 == hashlib.sha256(body).hexdigest()
    assert calls == [0, 1000, 5000]


def test_stream_starts_again_when_the_server_ignores_the_range(tmp_path):
    body = b"x" * 3000
    open_from, calls = _opener(body, [1000], honour_range=False)
    out = HashingFile(tmp_path / "f")
    stream(open_from, out, len(body), "src", (OSError,))
    assert (out.close().size_bytes, calls) == (3000, [0, 1000])


def test_stream_gives_up_after_the_attempts(tmp_path):
    body = b"y" * 10_000
    open_from, calls = _opener(body, [1000 * (i + 1) for i in range(10)])
    with pytest.raises(DownloadFailedError, match=f"src: the download broke off {ATTEMPTS} times"):
        stream(open_from, HashingFile(tmp_path / "f"), len(body), "src", (OSError,))
    assert len(calls) == ATTEMPTS


@pytest.mark.parametrize("key", ["m/../../etc/passwd", "m//x", "m/./x", "m/a/.."])
def test_object_keys_that_would_leave_the_entry_are_refused(key):
    with pytest.raises(DownloadFailedError, match="not a safe file path"):
        _relative(key, "m/", "s3://b/m/")
    assert _relative("m/sub/model.safetensors", "m/", "s3://b/m/") == "sub/model.safetensors"


def _entry(tmp_path: Path) -> tuple[FetchRequest, Path]:
    request = FetchRequest(source="hf://org/m", kind="model", revision="main")
    entry = tmp_path / request.entry
    entry.mkdir()
    (entry / "config.json").write_text("{}")
    files = [FetchedFile(path="config.json", size_bytes=2, sha256=hashlib.sha256(b"{}").hexdigest())]
    write_record(entry, make_record(request, entry, Fetched(files, "hub", 2, commit="c" * 40), 1.0))
    return request, entry


def test_a_complete_entry_is_reused_and_a_tampered_one_named(tmp_path):
    request, entry = _entry(tmp_path)
    record = reuse(entry, request)
    assert record is not None and record.commit == "c" * 40 and record.files is None
    assert record.sha256 == hashlib.sha256(f"{hashlib.sha256(b'{}').hexdigest()}  config.json\n".encode()).hexdigest()
    (entry / "config.json").write_text("{ }")
    with pytest.raises(ChecksumMismatchError, match="config.json has 3 bytes, its record says 2"):
        reuse(entry, request)
    with pytest.raises(ChecksumMismatchError, match="records hf://org/m@main"):
        reuse(entry, FetchRequest(source="hf://org/m", kind="model", revision="v2"))
    (entry / FETCH_RECORD_FILE).unlink()
    with pytest.raises(ChecksumMismatchError, match="has no valid record"):
        reuse(entry, request)
    assert reuse(tmp_path / "absent", request) is None


def test_extra_cas_are_added_to_the_systems(tmp_path, monkeypatch):
    extra = tmp_path / "ca.crt"
    extra.write_text("-----BEGIN CERTIFICATE-----\nextra\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("FINETUNE_CA_BUNDLE", str(extra))
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    trust_extra_cas()
    bundle = Path(os.environ["SSL_CERT_FILE"]).read_text()
    assert os.environ["AWS_CA_BUNDLE"] == os.environ["REQUESTS_CA_BUNDLE"] == os.environ["SSL_CERT_FILE"]
    assert bundle.endswith(extra.read_text()) and bundle.count("BEGIN CERTIFICATE") > 1
