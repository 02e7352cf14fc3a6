"""`finetune-train fetch` of https:// datasets from a real HTTPS server whose certificate the dev
cluster's CA signed: the spec's sha256 checked, reuse, validation with the trainer's reader, and each
bad input with its own reason and nothing left behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from finetune_api.protocol import ExitCode
from support.fetching import fetch_env, leftovers, run_fetch

TRAIN = (Path(__file__).resolve().parents[3] / "examples" / "log-intent" / "train.jsonl").read_bytes()
SHA = hashlib.sha256(TRAIN).hexdigest()
LINES = TRAIN.splitlines(keepends=True)
BAD = b"".join(LINES[:3]) + b'{"text": "link down", "label": ["link-state"]}\n' + b"".join(LINES[3:])  # line 4


@pytest.fixture(scope="module")
def url(https_files) -> str:
    https_files.put("bad/train.jsonl", BAD)
    return https_files.put("log-intent/train.jsonl", TRAIN)


def test_https_file_checked_against_its_sha256_then_reused(https_files, url, tmp_path):
    env = fetch_env(ca=https_files.ca)
    first = run_fetch(tmp_path, env, "--source", url, "--sha256", SHA, "--format", "auto", "--method", "classification")
    assert first.code == 0, first.stderr
    assert (first.output["sha256"], first.output["sizeBytes"], first.output["verifiedWith"]) == (
        SHA,
        len(TRAIN),
        "sha256",
    )
    assert (Path(first.output["path"]) / "train.jsonl").read_bytes() == TRAIN
    again = run_fetch(tmp_path, env, "--source", url, "--sha256", SHA)
    assert (again.code, again.output["cached"], again.output["bytesDownloaded"]) == (0, True, 0)


@pytest.mark.parametrize(
    "path, sha, code, fragment",
    [
        ("log-intent/train.jsonl", "0" * 64, ExitCode.CHECKSUM_MISMATCH, f"sha256 is {SHA}, the spec says 000"),
        ("log-intent/missing.jsonl", SHA, ExitCode.SOURCE_NOT_FOUND, "404 Not Found: no such file"),
        ("_forbidden/log-intent/train.jsonl", SHA, ExitCode.SOURCE_FORBIDDEN, "403 Forbidden"),
        ("_cut/log-intent/train.jsonl", SHA, ExitCode.DOWNLOAD_FAILED, "broke off 5 times"),
    ],
)
def test_bad_downloads(https_files, url, tmp_path, path, sha, code, fragment):
    source = f"{https_files.url}/{path}"
    result = run_fetch(tmp_path, fetch_env(ca=https_files.ca), "--source", source, "--sha256", sha)
    assert result.code == code and fragment in result.output["message"], result.output
    assert result.output["message"].startswith(source) and "\n" not in result.output["message"]
    assert leftovers(tmp_path) == []


def test_invalid_records_fail_before_any_training_with_file_and_line(https_files, url, tmp_path):
    bad = f"{https_files.url}/bad/train.jsonl"
    sha = hashlib.sha256(BAD).hexdigest()
    result = run_fetch(tmp_path, fetch_env(ca=https_files.ca), "--source", bad, "--sha256", sha, "--format", "auto")
    assert (result.code, result.output["reason"]) == (ExitCode.INVALID_DATA, "InvalidData")
    assert result.output["message"].startswith('train.jsonl:4: field "label": expected a string'), result.output
    assert leftovers(tmp_path) == []


def test_untrusted_certificate(https_files, url, tmp_path):
    result = run_fetch(tmp_path, fetch_env(), "--source", url, "--sha256", SHA)
    assert (result.code, result.output["reason"]) == (ExitCode.DOWNLOAD_FAILED, "DownloadFailed")
    assert "CERTIFICATE_VERIFY_FAILED" in result.output["message"]
