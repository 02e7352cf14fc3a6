"""`finetune-train fetch` of hf:// sources, driven by the real `huggingface_hub` client against the Hub
stand-in (finetune_devcluster.hubserver: the Hub's download endpoints, a stand-in because the Hub
cannot be reached here) through HF_ENDPOINT: a model at a tag, a dataset file and a split, each
checked against the Hub's hashes, and each bad input with its own reason."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from finetune_api.protocol import ExitCode
from finetune_devcluster.dataservers import (
    HUB_CORRUPT_MODEL,
    HUB_CUT_MODEL,
    HUB_DATASET,
    HUB_GATED_MODEL,
    HUB_MODEL,
    HUB_TAG,
    minilm_dir,
)
from support.fetching import fetch_env, leftovers, run_fetch

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "log-intent"


def test_model_at_a_tag_is_the_builtin_models_files(hub, tmp_path):
    result = run_fetch(tmp_path, fetch_env(hub=hub, ca=hub.ca), "--source", f"hf://{HUB_MODEL}", "--revision", HUB_TAG)
    assert result.code == 0, result.stderr
    record, entry = result.output, Path(result.output["path"])
    expected = sorted(p for p in minilm_dir().rglob("*") if p.is_file())
    assert sorted(
        p.relative_to(entry) for p in entry.rglob("*") if p.is_file() and p.name != ".finetune-fetch.json"
    ) == [p.relative_to(minilm_dir()) for p in expected]
    assert (entry / "model.safetensors").read_bytes() == (minilm_dir() / "model.safetensors").read_bytes()
    assert len(record["commit"]) == 40 and record["revision"] == HUB_TAG
    assert record["verifiedWith"] == "hub-lfs-sha256+git-blob-sha1" and not record["cached"]
    assert record["bytesDownloaded"] == sum(p.stat().st_size for p in expected)


def test_dataset_split_is_its_shards_in_order_and_a_file_is_itself(hub, tmp_path):
    env = fetch_env(hub=hub, ca=hub.ca)
    split = run_fetch(tmp_path, env, "--source", f"hf://datasets/{HUB_DATASET}/train", "--format", "classification")
    assert split.code == 0, split.stderr
    assert split.output["file"] == "train.jsonl"
    train = (EXAMPLE / "train.jsonl").read_bytes()
    assert (Path(split.output["path"]) / "train.jsonl").read_bytes() == train
    assert split.output["sha256"] == hashlib.sha256(train).hexdigest()
    file = run_fetch(tmp_path, env, "--source", f"hf://datasets/{HUB_DATASET}/data/validation-00000-of-00001.jsonl")
    assert file.code == 0, file.stderr
    assert (Path(file.output["path"]) / file.output["file"]).read_bytes() == (EXAMPLE / "eval.jsonl").read_bytes()


@pytest.mark.parametrize(
    "source, args, env_change, code, fragment",
    [
        (f"hf://{HUB_MODEL}", ["--revision", "no-such-branch"], {}, ExitCode.REVISION_NOT_FOUND, "no revision"),
        ("hf://finetune-dev/no-such-model", [], {}, ExitCode.SOURCE_NOT_FOUND, "no such repo"),
        (f"hf://datasets/{HUB_DATASET}/test", [], {}, ExitCode.SOURCE_NOT_FOUND, "no JSON Lines files of split"),
        (f"hf://datasets/{HUB_DATASET}/data/nope.jsonl", [], {}, ExitCode.SOURCE_NOT_FOUND, "has no file"),
        (f"hf://{HUB_GATED_MODEL}", [], {"HF_TOKEN": ""}, ExitCode.SOURCE_FORBIDDEN, "a gated repo"),
        (f"hf://{HUB_GATED_MODEL}", [], {"HF_TOKEN": "hf_finetune_dev_no_access"}, ExitCode.SOURCE_FORBIDDEN, "gated"),
        (f"hf://{HUB_MODEL}", [], {"HF_TOKEN": "hf_wrong"}, ExitCode.SOURCE_FORBIDDEN, "refused access (401)"),
        (f"hf://{HUB_CORRUPT_MODEL}", [], {}, ExitCode.CHECKSUM_MISMATCH, "model.safetensors has sha256"),
        (f"hf://{HUB_CUT_MODEL}", [], {}, ExitCode.DOWNLOAD_FAILED, HUB_CUT_MODEL),
    ],
)
def test_bad_hub_sources(hub, tmp_path, source, args, env_change, code, fragment):
    result = run_fetch(tmp_path, fetch_env(hub=hub, ca=hub.ca) | env_change, "--source", source, *args)
    assert result.code == code and fragment in result.output["message"], result.output
    assert result.output["message"].startswith(source) and "\n" not in result.output["message"]
    assert leftovers(tmp_path) == []
