"""The adversarial corpus (issues 9 and 16), data side: bad training files given to the real
`finetune-train --config` (in this process, before any model loads). Each must exit InvalidData
with a one-line message naming the file, and publish nothing in the output directory."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from finetune_api.protocol import ExitCode
from support import trainer as helpers

pytestmark = pytest.mark.adversarial

CHAT = [json.dumps(r) for r in helpers.records("chat", 24)]
CAFE = {"messages": [{"role": "user", "content": "caf\u00e9"}, {"role": "assistant", "content": "cr\u00e8me"}]}


def lines(rows: list[str]) -> bytes:
    return "".join(row + "\n" for row in rows).encode()


def classification(stray: str) -> bytes:
    rows = [
        {"text": f"sample {i} {'great' if i % 2 else 'awful'}", "label": "pos" if i % 2 else "neg"} for i in range(24)
    ]
    rows[5]["label"] = stray
    return lines([json.dumps(r) for r in rows])


def published(out: Path) -> set[str]:
    """What the run left in its output directory."""
    return {p.name for p in out.iterdir()} if out.is_dir() else set()


CLASSIFY = {"method": "classification", "dataset": {"format": "classification", "labels": ["pos", "neg"]}}

# id -> (the data file's bytes, or None: a directory where the file should be; config sections; message)
CASES: dict[str, tuple[bytes | None, dict, str]] = {
    "empty-file": (b"", {}, "train.jsonl: the dataset has no records"),
    "whitespace-only-file": (b"\n   \n\n", {}, "train.jsonl: the dataset has no records"),
    "binary-file": (random.Random(7).randbytes(4096), {}, "train.jsonl: not UTF-8 text (invalid start byte at byte 1)"),
    "utf16-file": (
        lines(CHAT).decode().encode("utf-16"),
        {},
        "train.jsonl: not UTF-8 text (invalid start byte at byte 0)",
    ),
    "latin1-file": (
        lines(CHAT[:2] + [json.dumps(CAFE, ensure_ascii=False)] + CHAT[2:]).decode().encode("latin-1"),
        {},
        "train.jsonl: not UTF-8 text (invalid continuation byte at byte 289)",
    ),
    "duplicates-only": (
        lines([CHAT[0]] * 30),
        {},
        "train.jsonl: only 1 usable records (30 read, 0 empty or shorter than minChars=1, 29 duplicates); "
        "dataset.minRecords is 10",
    ),
    "empty-answers": (
        lines(
            [
                json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": ""}]})
                for i in range(20)
            ]
        ),
        {},
        "train.jsonl: only 0 usable records (20 read, 20 empty or shorter than minChars=1, 0 duplicates); "
        "dataset.minRecords is 10",
    ),  # fmt: skip
    "dpo-on-chat-data": (
        lines(CHAT),
        {"method": "dpo"},
        "train.jsonl:1: records are in 'chat' format, which this method cannot train on (it takes preference); "
        "it has no rejected answers: train on it with method sft",
    ),
    "directory-instead-of-file": (None, {}, "{data}: cannot read dataset file: [Errno 21] Is a directory: '{data}'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_refused_naming_the_file(tmp_path: Path, run: Callable, case: str) -> None:
    content, sections, expected = CASES[case]
    data = tmp_path / "train.jsonl"
    if content is None:
        data.mkdir()
    else:
        data.write_bytes(content)
    r = run(helpers.make_config("/nonexistent-model", data, tmp_path / "out", **sections), tmp_path)
    assert (r.rc, r.summary.get("reason")) == (ExitCode.INVALID_DATA, "InvalidData"), (r.rc, r.summary)
    assert r.summary["message"] == expected.format(data=data), r.summary["message"]
    assert published(r.out) <= {"_RUN", "progress.json"}


def test_a_five_megabyte_record_is_read_not_refused(tmp_path: Path) -> None:
    """One 5 MB chat record among 24: read as any other (training truncates it to maxSeqLength)."""
    from finetune_api.training import DatasetSpec
    from finetune_trainer.data import load_dataset_spec

    big = {"messages": [{"role": "user", "content": "x " * 2_500_000}, {"role": "assistant", "content": "ok"}]}
    data = tmp_path / "train.jsonl"
    data.write_bytes(lines(CHAT[:3] + [json.dumps(big)] + CHAT[3:]))
    prepared = load_dataset_spec(DatasetSpec(source=str(data), validationSplit=0.2), seed=0)
    assert prepared.report.records_read == 25 and prepared.report.usable == 25


def test_a_label_outside_dataset_labels_is_refused_naming_the_record(
    tmp_path: Path, run: Callable, tiny_bert: Path
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_bytes(classification("neutral"))
    r = run(helpers.make_config(tiny_bert, data, tmp_path / "out", **CLASSIFY), tmp_path)
    assert (r.rc, r.summary.get("reason")) == (ExitCode.INVALID_DATA, "InvalidData"), (r.rc, r.summary)
    assert (
        r.summary["message"]
        == 'train.jsonl:6: field "label": unknown label "neutral"; dataset.labels is ["pos", "neg"]'
    )
    assert published(r.out) <= {"_RUN", "progress.json"}
