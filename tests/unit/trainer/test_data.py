"""Dataset formats, auto-detection, curation, split and every bad-data case (no model needed
for most; the CLI cases assert the exit code and the termination summary too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_api.protocol import ExitCode
from finetune_api.training import DatasetFormat, DatasetSpec
from finetune_trainer.data import load_dataset_spec, read_records
from finetune_trainer.errors import DataError
from finetune_trainer.formats import normalize_text
from support import trainer as helpers

SFT_FORMATS = {
    DatasetFormat.CHAT,
    DatasetFormat.SHAREGPT,
    DatasetFormat.ALPACA,
    DatasetFormat.PROMPT_COMPLETION,
    DatasetFormat.TEXT,
}


@pytest.mark.parametrize("fmt", ["chat", "sharegpt", "alpaca", "prompt-completion", "text"])
def test_every_format_is_read_and_auto_detected(tmp_path, fmt):
    path = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records(fmt, 12))
    detected, recs = read_records(path, DatasetFormat.AUTO, SFT_FORMATS)
    assert detected.value == fmt
    assert len(recs) == 12 and recs[0].line == 1
    explicit, recs2 = read_records(path, DatasetFormat(fmt))
    assert explicit.value == fmt and [r.data for r in recs2] == [r.data for r in recs]
    if fmt == "sharegpt":  # converted to chat messages with mapped roles
        assert [m["role"] for m in recs[0].data["messages"]] == ["system", "user", "assistant"]


def test_json_array_with_line_numbers(tmp_path):
    rows = helpers.records("prompt-completion", 3)
    path = tmp_path / "data.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    fmt, recs = read_records(path, DatasetFormat.AUTO)
    assert fmt is DatasetFormat.PROMPT_COMPLETION
    assert [r.line for r in recs] == [2, 3, 4]
    path.write_text('[\n{"prompt": "a", "completion": "b"},\n{"prompt": "c", "completion": 7}\n]')
    with pytest.raises(DataError) as e:
        read_records(path, DatasetFormat.AUTO)
    assert e.value.message.startswith('data.json:3: field "completion": expected a string, got int 7')


BAD = [
    ("unparsable", ['{"messages": [}'], "train.jsonl:2: not valid JSON"),
    ("not-object", ["[1, 2]"], "train.jsonl:2: expected a JSON object per record, got list"),
    (
        "unknown-role",
        [
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": "y"},
                    {"role": "bot", "content": "z"},
                ]
            }
        ],
        'train.jsonl:2: field "messages[2].role": expected one of system/user/assistant, got "bot"',
    ),
    (
        "messages-not-list",
        [{"messages": "hello"}],
        'train.jsonl:2: field "messages": expected a list of turns, got str "hello"',
    ),
    (
        "content-not-string",
        [{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]}],
        'train.jsonl:2: field "messages[0].content": expected a string, got int 3',
    ),
    (
        "missing-content",
        [{"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}],
        'train.jsonl:2: field "messages[0].content": missing',
    ),
    (
        "no-assistant",
        [{"messages": [{"role": "user", "content": "x"}]}],
        "train.jsonl:2: field \"messages\": no 'assistant' turn",
    ),
    (
        "mixed",
        [{"prompt": "p", "completion": "c"}],
        (
            "train.jsonl:2: mixed formats: this record looks like 'prompt-completion' "
            "but the first record (line 1) is 'chat'"
        ),
    ),
    ("unknown-keys", [{"question": "q", "answer": "a"}], 'train.jsonl:2: field "messages": missing'),
]


@pytest.mark.adversarial
@pytest.mark.parametrize("name,second,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_records_name_file_line_and_field(tmp_path, name, second, expected):
    first = helpers.records("chat", 1)[0]
    lines = [json.dumps(first)] + [s if isinstance(s, str) else json.dumps(s) for s in second]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        read_records(path, DatasetFormat.AUTO, SFT_FORMATS)
    assert e.value.message.startswith(expected), e.value.message


def test_explicit_format_reports_missing_field_with_hint(tmp_path):
    path = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("alpaca", 2))
    with pytest.raises(DataError) as e:
        read_records(path, DatasetFormat.CHAT)
    assert e.value.message == (
        "train.jsonl:1: field \"messages\": missing (this record looks like 'alpaca' data, but the dataset is 'chat')"
    )


def test_auto_detection_refuses_unknown_layout_and_other_methods_data(tmp_path):
    path = helpers.write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(
        DataError, match=r"train.jsonl:1: cannot tell the record format from keys \['answer', 'question'\]"
    ):
        read_records(path, DatasetFormat.AUTO, SFT_FORMATS)


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "rows,hint",
    [
        (
            [{"prompt": "p", "chosen": "good", "rejected": "bad"}] * 2,
            "preference (prompt/chosen/rejected) data is trained with method dpo",
        ),
        (
            [{"text": "link down on gi0/1", "label": "link"}] * 2,
            "text/label data is trained with method classification",
        ),
    ],
)
def test_sft_on_other_methods_data_names_the_method_in_a_fresh_process(tmp_path, rows, hint):
    """The hint must not depend on which method modules happen to be imported already: a fresh
    interpreter running method sft (nothing else imported) on DPO or classification records."""
    import subprocess
    import sys

    data = helpers.write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(_cfg(tmp_path, data)))
    r = subprocess.run([sys.executable, "-m", "finetune_trainer", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == ExitCode.INVALID_DATA, r.stderr[-2000:]
    message = json.loads((tmp_path / "out.termination").read_text())["message"]
    assert message.startswith("train.jsonl:1: records are in") and message.endswith(hint), message


def test_curation_normalizes_dedups_drops_short_and_counts(tmp_path):
    rows = helpers.records("prompt-completion", 20)
    rows += [
        dict(rows[0]),
        {"prompt": rows[1]["prompt"] + "  ", "completion": "\r\n" + rows[1]["completion"] + "   \n"},
    ]
    rows += [{"prompt": "x", "completion": "   "}, {"prompt": "y", "completion": "ab"}]
    path = helpers.write_jsonl(tmp_path / "train.jsonl", rows)
    spec = DatasetSpec(source=str(path), min_chars=3, validation_split=0.25)
    data = load_dataset_spec(spec, seed=1, allowed=SFT_FORMATS)
    r = data.report
    assert (r.records_read, r.duplicates_dropped, r.short_dropped, r.usable) == (24, 2, 2, 20)
    assert (r.train_records, r.validation_records) == (15, 5)
    keys_train, keys_val = {x.key for x in data.train}, {x.key for x in data.validation}
    assert not keys_train & keys_val
    # Same seed, same split; another seed, another split.
    again = load_dataset_spec(spec, seed=1, allowed=SFT_FORMATS)
    assert [x.key for x in again.validation] == [x.key for x in data.validation]
    other = load_dataset_spec(spec, seed=2, allowed=SFT_FORMATS)
    assert {x.key for x in other.validation} != keys_val
    assert r.to_json()["duplicatesDropped"] == 2


def test_normalize_text_keeps_indentation():
    assert normalize_text("  a  \r\n\r\n\r\n\tb\u00a0 \n") == "a\n\n\tb"


def test_validation_file_overlap_is_removed_and_counted(tmp_path):
    rows = helpers.records("chat", 20)
    train = helpers.write_jsonl(tmp_path / "train.jsonl", rows)
    val = helpers.write_jsonl(tmp_path / "val.jsonl", rows[:3] + helpers.records("chat", 5, seed=9))
    data = load_dataset_spec(DatasetSpec(source=str(train), validation_source=str(val)), seed=0, allowed=SFT_FORMATS)
    assert data.report.validation_overlap_removed == 3
    assert data.report.validation_records == 5 and data.report.train_records == 20


@pytest.mark.adversarial
def test_too_few_records(tmp_path):
    path = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("text", 5) * 3)
    with pytest.raises(DataError) as e:
        load_dataset_spec(DatasetSpec(source=str(path)), seed=0, allowed=SFT_FORMATS)
    assert e.value.message == (
        "train.jsonl: only 5 usable records (15 read, 0 empty or shorter than minChars=1, "
        "10 duplicates); dataset.minRecords is 10"
    )


# --- through the CLI: exit codes and termination summary, before any model loads ----------------


def _cfg(tmp_path, data, model="/nonexistent-model", **over):
    return helpers.make_config(model, data, tmp_path / "out", **over)


@pytest.mark.adversarial
def test_cli_bad_data_exits_3_with_message_in_summary(tmp_path, run):
    rows = [json.dumps(r) for r in helpers.records("chat", 20)]
    rows[16] = json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}]})
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(rows) + "\n")
    # The model does not exist: data is checked first, so the data error wins.
    r = run(_cfg(tmp_path, data), tmp_path)
    assert r.rc == ExitCode.INVALID_DATA == 3
    msg = 'train.jsonl:17: field "messages[1].role": expected one of system/user/assistant, got "bot"'
    assert {k: r.summary[k] for k in ("outcome", "reason", "message")} == {
        "outcome": "failed",
        "reason": "InvalidData",
        "message": msg,
    }
    assert not (tmp_path / "out" / "_COMPLETE").exists()


def test_cli_too_few_records_exits_3(tmp_path, run):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("alpaca", 4))
    r = run(_cfg(tmp_path, data), tmp_path)
    assert r.rc == 3 and "dataset.minRecords is 10" in r.summary["message"]


@pytest.mark.adversarial
def test_cli_missing_dataset_file(tmp_path, run):
    r = run(_cfg(tmp_path, tmp_path / "nope.jsonl"), tmp_path)
    assert r.rc == 3 and r.summary["message"].endswith("nope.jsonl: dataset file does not exist")


@pytest.mark.adversarial
def test_cli_missing_model_exits_4_naming_source(tmp_path, run):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 12))
    r = run(_cfg(tmp_path, data, model="/models/does-not-exist"), tmp_path)
    assert r.rc == ExitCode.MODEL_NOT_FOUND == 4
    assert r.summary["reason"] == "ModelNotFound"
    assert r.summary["message"] == "model /models/does-not-exist: no such directory"
    r = run(_cfg(tmp_path, data, model="builtin:no-such-model"), tmp_path)
    assert r.rc == 4 and r.summary["message"].startswith("model builtin:no-such-model: no such builtin model (known: ")
    assert "smollm2-135m-instruct" in r.summary["message"]


def test_cli_pvc_source_is_invalid_config(tmp_path, run):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 12))
    r = run(_cfg(tmp_path, data, model="pvc://models/llama"), tmp_path)
    assert r.rc == ExitCode.INVALID_CONFIG == 2
    assert r.summary["reason"] == "InvalidConfig"
    assert "field \"model.source\": 'pvc://models/llama' is a pvc:// location" in r.summary["message"]


def test_cli_downloaded_sources_are_invalid_config(tmp_path, run):
    """The operator fetches s3://, https:// and hf://datasets/ sources; a config still naming one is refused."""
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 12))
    r = run(_cfg(tmp_path, data, model="s3://models/llama/"), tmp_path)
    assert (r.rc, r.summary["reason"]) == (ExitCode.INVALID_CONFIG, "InvalidConfig")
    assert r.summary["message"] == (
        "field \"model.source\": 's3://models/llama/' is downloaded by `finetune-train fetch` before "
        "training; the trainer reads what it fetched (an absolute path)"
    )


def test_cli_invalid_config_fields(tmp_path, run):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 12))
    cfg = _cfg(tmp_path, data, training={"maxSteps": 0, "epochs": 1})
    r = run(cfg, tmp_path)
    assert r.rc == 2
    assert 'field "training.maxSteps": Input should be greater than or equal to 1' in r.summary["message"]
    (tmp_path / "broken.json").write_text("{not json")
    from finetune_trainer.cli import main

    assert main(["train", "--config", str(tmp_path / "broken.json")]) == 2


def test_config_from_env(tmp_path, monkeypatch, capsys):
    from finetune_trainer.cli import main

    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 3))
    cfg = _cfg(tmp_path, data)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("FINETUNE_CONFIG", str(tmp_path / "c.json"))
    assert main([]) == 3  # read the env config and failed on its 3-record dataset
    assert (
        "only 3 usable records" in json.loads(Path(cfg["reporting"]["terminationMessagePath"]).read_text())["message"]
    )


def test_no_chat_template_for_chat_data_exits_2(tmp_path, run, tiny_model_no_template):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("sharegpt", 12))
    r = run(_cfg(tmp_path, data, model=tiny_model_no_template), tmp_path)
    assert r.rc == 2
    assert r.summary["message"].startswith(
        f"model {tiny_model_no_template} has no chat template, but train.jsonl is sharegpt data"
    )
    assert not (tmp_path / "out" / "checkpoints").exists()  # failed before the model was loaded


@pytest.mark.adversarial
def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(r) for r in helpers.records("chat", 3)]
    path.write_bytes("\ufeff".encode() + "\n".join(lines).encode())
    fmt, records = read_records(path, DatasetFormat.AUTO)
    assert fmt is DatasetFormat.CHAT and len(records) == 3


@pytest.mark.adversarial
def test_a_record_missing_its_label_is_named_not_called_mixed_formats(tmp_path):
    rows = [{"text": f"line {i}", "label": "a" if i % 2 else "b"} for i in range(4)]
    rows.insert(2, {"text": "no label here"})
    path = helpers.write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError) as e:
        read_records(path, DatasetFormat.AUTO)
    assert e.value.message == 'train.jsonl:3: field "label": missing (every classification record needs it)'
    other = helpers.write_jsonl(tmp_path / "mixed.jsonl", [rows[0], {"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(DataError, match="mixed formats: this record looks like 'chat'"):
        read_records(other, DatasetFormat.AUTO)


@pytest.mark.adversarial
def test_errors_in_the_validation_file_say_so(tmp_path):
    train = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 12))
    bad = helpers.records("chat", 3)
    bad[1]["messages"][0]["role"] = "bot"
    val = helpers.write_jsonl(tmp_path / "eval.jsonl", bad)
    spec = DatasetSpec.model_validate({"source": str(train), "validationSource": str(val), "minRecords": 1})
    with pytest.raises(DataError) as e:
        load_dataset_spec(spec, 0)
    assert e.value.message.startswith('validation file eval.jsonl:2: field "messages[0].role": expected one of')
    spec = DatasetSpec.model_validate({"source": str(train), "validationSource": str(tmp_path / "x.jsonl")})
    with pytest.raises(DataError, match=r"^validation file .*x\.jsonl: dataset file does not exist$"):
        load_dataset_spec(spec, 0)


@pytest.mark.adversarial
def test_messages_quote_a_short_marked_excerpt_of_the_data(tmp_path):
    secret = "S3CR3T-DB-PASSWORD-hunter2-" + "x" * 200
    rows = helpers.records("chat", 2)
    rows[1]["messages"][0]["role"] = secret
    with pytest.raises(DataError) as e:
        read_records(helpers.write_jsonl(tmp_path / "train.jsonl", rows), DatasetFormat.AUTO)
    assert e.value.message.endswith(f'got "{secret[:36]}... (an excerpt: {len(secret) + 2} characters in all)')
    assert secret[40:] not in e.value.message
