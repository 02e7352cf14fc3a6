"""The trainer reads what `finetune-train fetch` left: a dataset entry's file, and the records in its report."""

import json

import pytest

from finetune_api.protocol import FETCH_RECORD_FILE, FetchedFile, FetchRecord
from finetune_api.training import DatasetSpec, TrainerConfig
from finetune_trainer import fetched, report
from finetune_trainer.data import load_dataset_spec
from finetune_trainer.errors import ConfigError

SHA = "ef" * 32


def make_entry(root, name, source, file=None, lines=()):
    entry = root / name
    entry.mkdir()
    files = []
    if file:
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (entry / file).write_text(text)
        files.append(FetchedFile(path=file, size_bytes=len(text.encode()), sha256=SHA))
    record = FetchRecord(
        source=source,
        path=str(entry),
        file=file,
        file_count=len(files),
        size_bytes=sum(f.size_bytes for f in files),
        sha256=SHA,
        verified_with="sha256",
        bytes_downloaded=0,
        seconds=0.1,
        cached=False,
        files=files,
    )
    (entry / FETCH_RECORD_FILE).write_text(record.model_dump_json(by_alias=True, exclude_none=True))
    return entry


RECORDS = [{"prompt": f"question {i}?", "completion": f"answer {i}"} for i in range(12)]


def test_a_fetched_dataset_entry_is_read_as_the_file_its_record_names(tmp_path):
    entry = make_entry(tmp_path, "files-train.jsonl-1234", "https://files.example/train.jsonl", "train.jsonl", RECORDS)
    assert fetched.data_file(str(entry)) == str(entry / "train.jsonl")
    plain = tmp_path / "plain.jsonl"
    assert fetched.data_file(str(plain)) == str(plain)  # anything else is left alone
    data = load_dataset_spec(DatasetSpec(source=str(entry), format="prompt-completion"), seed=0)
    assert data.train_name == "train.jsonl" and data.report.records_read == 12


def test_a_model_entry_is_not_a_dataset(tmp_path):
    entry = make_entry(tmp_path, "acme-tiny-5678", "hf://acme/tiny")
    with pytest.raises(ConfigError, match="holds a directory, not a data file"):
        fetched.data_file(str(entry))
    (entry / FETCH_RECORD_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="record is unreadable"):
        fetched.record_of(str(entry))


def test_the_fetched_sources_go_into_the_report(tmp_path):
    model = make_entry(tmp_path, "acme-tiny-5678", "hf://acme/tiny")
    data = make_entry(tmp_path, "train-1234", "s3://b/train.jsonl", "train.jsonl", RECORDS)
    config = TrainerConfig.model_validate(
        {"model": {"source": str(model)}, "dataset": {"source": str(data)}, "output": {"dir": str(tmp_path / "o")}}
    )
    sources = fetched.sources(config)
    assert [s["source"] for s in sources] == ["hf://acme/tiny", "s3://b/train.jsonl"]
    assert sources[1] == {
        "field": "dataset.source",
        "source": "s3://b/train.jsonl",
        "sha256": SHA,
        "sizeBytes": sources[1]["sizeBytes"],
        "fileCount": 1,
        "verifiedWith": "sha256",
    }
    lines = report_lines(tmp_path, sources)
    assert (
        f"- dataset.source: s3://b/train.jsonl, {sources[1]['sizeBytes']} bytes, sha256 {SHA} (checked with sha256)"
        in lines
    )


def report_lines(tmp_path, sources):
    metrics = {"trainableParameters": 1, "totalParameters": 2, "sources": sources, "dataset": {}}
    report.write_eval_report(tmp_path / "r.md", metrics, [])
    return (tmp_path / "r.md").read_text().splitlines()
