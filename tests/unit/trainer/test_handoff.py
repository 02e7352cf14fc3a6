"""The hand-off after real training runs on tiny models (and the real SmolLM2): adapter_config.json
names the base by a portable reference, README.md is a filled model card (no template text, no
path of the trainer pod), serving/ holds the manifests, the trainer reports status.serving, and
``finetune-train serve`` answers over HTTP like the trainer's own final evaluation."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from finetune_api.protocol import ExitCode
from finetune_api.training import TrainerConfig
from finetune_trainer import serve
from finetune_trainer.artifacts import sha256_file, verify_checksums
from finetune_trainer.cli import main
from finetune_trainer.models import BUILTIN_MODELS, builtin_dir
from finetune_trainer.provenance import base_model_ref
from support import trainer as helpers
from support.protocol_v010 import TrainerSummaryV010

PEFT_TEMPLATE_MARKER = "[More Information Needed]"  # what PEFT's empty model card is made of

pytestmark = pytest.mark.usefixtures("one_thread")


def origin(name: str, model: str, output: str, **more) -> dict:
    """What the operator sets: the FineTuneJob's own locations (the trainer reads local paths here)."""
    return {"model": model, "dataset": "pvc://datasets/train.jsonl", "output": output, "name": name, **more}


@contextlib.contextmanager
def http_server(served: serve.Served) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), serve.make_handler(served))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/models/{served.name}"
    finally:
        server.shutdown()
        server.server_close()


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def assert_portable(out: Path, *local: Path) -> None:
    """No file a serving stack or a reader gets names a path of the trainer's machine."""
    texts = [out / "adapter_config.json", out / "README.md", *sorted((out / "serving").glob("*.yaml"))]
    for path in texts:
        text = path.read_text()
        for p in local:
            assert str(p) not in text, f"{path.name} names the local path {p}"
    assert PEFT_TEMPLATE_MARKER not in (out / "README.md").read_text()


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


# --- a classifier: LoRA on a tiny BERT, merged ------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls-handoff")
    train = helpers.write_jsonl(tmp / "train.jsonl", helpers.label_rows(60))
    val = helpers.write_jsonl(tmp / "eval.jsonl", helpers.label_rows(24, seed=7))
    cfg = helpers.make_config(
        tiny_bert,
        train,
        tmp / "out",
        method="classification",
        dataset={"source": str(train), "validationSource": str(val), "labels": helpers.LABELS},
        peft={"r": 4, "alpha": 8, "dropout": 0.0, "targetModules": ["auto"]},
        training={"maxSteps": 20, "batchSize": 8, "learningRate": 2e-2, "maxSeqLength": 32, "optimizer": "adamw_torch"},
        output={"dir": str(tmp / "out"), "owner": "team/intent", "merge": True},
        origin=origin(
            "intent",
            "pvc://models/tiny-bert",
            "pvc://artifacts/team/intent",
            validationDataset="pvc://datasets/eval.jsonl",
        ),
    )
    return helpers.run_cli(cfg, tmp), tiny_bert, train, val


def test_classifier_artifacts_name_their_base_and_data_portably(classifier_run):
    run, model, train, val = classifier_run
    assert run.rc == 0, run.summary
    adapter_config = json.loads((run.out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "pvc://models/tiny-bert"
    assert json.loads((run.out / "label_map.json").read_text())["baseModel"] == "pvc://models/tiny-bert"
    assert_portable(run.out, model, train.parent)
    assert verify_checksums(run.out) == []  # README.md and serving/ are published with the adapter
    sums = (run.out / "SHA256SUMS").read_text()
    assert "  README.md\n" in sums and "  serving/kserve-inferenceservice.yaml\n" in sums


def test_classifier_model_card_is_filled_from_the_run(classifier_run):
    run, model, train, val = classifier_run
    card = (run.out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert "base_model" not in meta  # a base on a claim has no Hub id
    m = json.loads((run.out / "metrics.json").read_text())
    assert f"| train | `pvc://datasets/train.jsonl` | `{sha256_file(train)}` | 60 | 60 |" in card
    assert f"| validation | `pvc://datasets/eval.jsonl` | `{sha256_file(val)}` | 24 | 24 |" in card
    assert f"`{sha256_file(model / 'model.safetensors')}`" in card  # the base weights trained on
    assert f"| accuracy (higher is better) | {m['baseline']['accuracy']:.4f} | {m['final']['accuracy']:.4f} |" in card
    assert "| `training.maxSteps` | `20` | unset |" in card and "| `peft.r` | `4` | `16` |" in card
    assert "Labels, in id order: `alpha`, `beta`, `gamma`." in card
    assert "`serving/kserve-inferenceservice.yaml`" in card
    assert "The forgetting check (`evaluation.generalSource`) was not run." in card


def test_classifier_serving_status_and_manifest(classifier_run):
    run, *_ = classifier_run
    serving = run.serving
    assert serving and serving == json.loads((run.out / "metrics.json").read_text())["serving"]
    TrainerSummaryV010.model_validate(run.summary)  # the completion record a rolled-back 0.1.0 still reads
    assert serving["adapterUri"] == "pvc://artifacts/team/intent" and serving["taskType"] == "SEQ_CLS"
    assert serving["runtimes"] == ["kserve"] and serving["mergedUri"] == "pvc://artifacts/team/intent/merged"
    assert serving["loraRank"] == 4 and serving["targetModules"] == ["key", "query", "value"]
    (isvc,) = yaml.safe_load_all((run.out / "serving" / "kserve-inferenceservice.yaml").read_text())
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://artifacts/team/intent/merged"
    assert (run.out / "merged" / "config.json").is_file()


def test_eval_predictions_are_the_final_evaluations(classifier_run):
    run, _, _, val = classifier_run
    rows = [json.loads(line) for line in (run.out / "eval_predictions.jsonl").read_text().splitlines()]
    records = [json.loads(line) for line in val.read_text().splitlines()]
    assert [(r["file"], r["line"], r["text"], r["label"]) for r in rows] == [
        ("eval.jsonl", i + 1, rec["text"], rec["label"]) for i, rec in enumerate(records)
    ]
    final = json.loads((run.out / "metrics.json").read_text())["final"]
    assert sum(r["predicted"] == r["label"] for r in rows) / len(rows) == pytest.approx(final["accuracy"])


def test_served_classifier_answers_like_the_final_evaluation(classifier_run):
    run, model, *_ = classifier_run
    rows = [json.loads(line) for line in (run.out / "eval_predictions.jsonl").read_text().splitlines()]
    served = serve.load(str(run.out), model=str(model), name="intent")
    with http_server(served) as url:
        code, body = post(f"{url}:predict", {"instances": [r["text"] for r in rows]})
        assert code == 200, body
        assert [p["label"] for p in body["predictions"]] == [r["predicted"] for r in rows]
        assert post(f"{url}:predict", {"instances": [{"messages": []}]}) == (
            400,
            {"error": "a classifier's instances are texts"},
        )
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert json.loads(reply.read()) == {"name": "intent", "ready": True}


# --- a causal LM: LoRA SFT on a tiny Llama whose base is on a claim -----------------------------------


@pytest.fixture(scope="module")
def sft_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sft-handoff")
    data = helpers.write_jsonl(tmp / "train.jsonl", helpers.records("chat", 30))
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp / "out",
        output={"dir": str(tmp / "out"), "owner": "team/tiny-sft"},
        serving={"replicas": 2},
        origin=origin("tiny-sft", "pvc://models/tiny-llama", "pvc://artifacts/team/tiny-sft"),
    )
    return helpers.run_cli(cfg, tmp), tiny_model, data


def test_causal_lm_hand_off_on_a_claim_base(sft_run):
    run, model, data = sft_run
    assert run.rc == 0, run.summary
    assert_portable(run.out, model, data.parent)
    assert json.loads((run.out / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "pvc://models/tiny-llama"
    )
    serving = run.serving
    assert serving["runtimes"] == ["vllm", "kserve"] and serving["baseModel"] == "pvc://models/tiny-llama"
    assert "kaito left out" in serving["note"] and "replicas 2 reduced to 1" in serving["note"]
    assert sorted(p.name for p in (run.out / "serving").iterdir()) == ["kserve-llminferenceservice.yaml", "vllm.yaml"]
    card = (run.out / "README.md").read_text()
    assert "| `training.maxSteps` | `4` | unset |" in card
    assert "base = AutoModelForCausalLM.from_pretrained(" in card  # a claim base: load it from a copy
    cfg = TrainerConfig.model_validate(json.loads((run.out / "trainer_config.json").read_text()))
    assert cfg.origin is not None and cfg.origin.model == "pvc://models/tiny-llama"


def test_a_run_outside_the_operator_writes_a_card_but_no_manifests(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 20))
    run = helpers.run_cli(helpers.make_config(tiny_model, data, tmp_path / "out"), tmp_path)
    assert run.rc == 0, run.summary
    assert "serving" not in run.summary and not (run.out / "serving").exists()
    card = (run.out / "README.md").read_text()
    assert PEFT_TEMPLATE_MARKER not in card and "No serving manifests: the output is not on a claim" in card
    assert json.loads((run.out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model)


# --- the built-in models' references ------------------------------------------------------------------


def builtin_config(name: str, method: str = "sft") -> TrainerConfig:
    return TrainerConfig.model_validate(
        {
            "method": method,
            "model": {"source": f"builtin:{name}"},
            "dataset": {"source": "/data/train.jsonl"},
            "output": {"dir": "/tmp/out"},
        }
    )


def test_builtin_minilm_is_the_hub_file_at_its_revision():
    from finetune_trainer.models import resolve_source

    config = builtin_config("minilm-l6", "classification")
    ref = base_model_ref(config, resolve_source(config.model))
    builtin = BUILTIN_MODELS["minilm-l6"]
    assert ref.reference == "hf://sentence-transformers/all-MiniLM-L6-v2"
    assert ref.sha256 == sha256_file(builtin_dir("minilm-l6", builtin) / "model.safetensors") == builtin.hub_sha256
    assert ref.revision == "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
    assert ref.provenance and "byte-identical" in ref.provenance


# --- the real SmolLM2: trained on its dequantized GGUF, served by its Hub id ---------------------------


@pytest.mark.slow
def test_smollm2_adapter_is_served_by_its_portable_reference(tmp_path):
    train = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 24))
    val = helpers.write_jsonl(tmp_path / "eval.jsonl", helpers.records("chat", 4, seed=5))
    cfg = helpers.make_config(
        "builtin:smollm2-135m-instruct",
        train,
        tmp_path / "out",
        dataset={"source": str(train), "validationSource": str(val)},
        training={"maxSteps": 2, "maxSeqLength": 64},
        evaluation={"sampleGenerations": 1, "maxNewTokens": 12},
        output={"dir": str(tmp_path / "out"), "owner": "team/smol"},
        origin=origin(
            "smol",
            "builtin:smollm2-135m-instruct",
            "pvc://artifacts/team/smol",
            validationDataset="pvc://datasets/eval.jsonl",
        ),
    )
    run = helpers.run_cli(cfg, tmp_path)
    assert run.rc == 0, run.summary
    adapter_config = json.loads((run.out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert adapter_config["revision"] is None  # the packaged GGUF is no Hub revision of it
    card = (run.out / "README.md").read_text()
    assert front_matter(card)["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    gguf = builtin_dir("smollm2-135m-instruct", BUILTIN_MODELS["smollm2-135m-instruct"]) / (
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert f"SHA-256 `{sha256_file(gguf)}`" in card and "not the upstream bf16 checkpoint" in card
    assert run.serving["runtimes"] == ["vllm", "kserve", "kaito"]
    assert_portable(run.out, tmp_path)
    # served from the adapter alone: its reference resolves to the built-in model, offline
    sample = json.loads((run.out / "metrics.json").read_text())["samples"][0]
    record = json.loads(val.read_text().splitlines()[0])
    served = serve.load(str(run.out))
    with http_server(served) as url:
        messages = record["messages"][:-1]
        code, body = post(f"{url}:predict", {"instances": [{"messages": messages}], "parameters": {"max_tokens": 12}})
    assert code == 200, body
    assert body["predictions"][0]["text"] == sample["tuned"] and sample["tuned"]


def test_serve_refuses_a_directory_without_an_adapter(tmp_path, caplog):
    assert main(["serve", "--adapter", str(tmp_path)]) == ExitCode.MODEL_NOT_FOUND
    assert f"adapter {tmp_path}: no adapter_config.json there" in caplog.text
