"""The shared API models: seed-chapter defaults, cross-field rules, wire format."""

import json

import pytest
from pydantic import ValidationError

from finetune_api.protocol import TERMINATION_MESSAGE_LIMIT, TrainerSummary
from finetune_api.resource import FineTuneJobSpec
from finetune_api.training import Method, PeftType, TrainerConfig

MINIMAL = {
    "model": {"source": "builtin:smollm2-135m-instruct"},
    "dataset": {"source": "pvc://datasets/train.jsonl"},
    "output": {"pvc": "artifacts"},
}


def spec(**overrides) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate({**MINIMAL, **overrides})


def test_defaults_follow_the_seed_chapters():
    s = spec()
    assert s.method is Method.SFT
    assert (s.peft.type, s.peft.r, s.peft.alpha, s.peft.dropout) == (PeftType.LORA, 16, 32, 0.1)
    assert s.peft.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    t = s.training
    assert (t.learning_rate, t.lr_scheduler, t.warmup_ratio) == (2e-4, "cosine", 0.03)
    assert (t.batch_size, t.gradient_accumulation_steps, t.effective_epochs) == (4, 4, 3.0)
    assert (t.optimizer, t.max_grad_norm, t.gradient_checkpointing) == ("paged_adamw_8bit", 0.3, True)
    assert s.backoff_limit == 0
    assert s.dataset.min_records == 10


def test_qlora_gets_4bit_nf4_double_quant_by_default():
    q = spec(peft={"type": "qlora"}).peft.quantization
    assert (q.bits, q.quant_type, q.double_quant, q.compute_dtype) == (4, "nf4", True, "auto")


def test_quantization_with_plain_lora_is_refused():
    with pytest.raises(ValidationError, match="only valid with peft.type qlora"):
        spec(peft={"type": "lora", "quantization": {}})


def test_epochs_and_max_steps_are_exclusive():
    with pytest.raises(ValidationError, match="at most one of training.epochs and training.maxSteps"):
        spec(training={"epochs": 2, "maxSteps": 10})
    assert spec(training={"maxSteps": 10}).training.max_steps == 10


@pytest.mark.parametrize(
    "method, fmt, fragment",
    [
        ("dpo", "chat", "use method sft"),
        ("classification", "alpaca", "text/label"),
        ("sft", "preference", "use method dpo"),
    ],
)
def test_method_and_dataset_format_must_fit(method, fmt, fragment):
    with pytest.raises(ValidationError, match=fragment):
        spec(method=method, dataset={"source": "/data/x.jsonl", "format": fmt})


def test_unknown_fields_are_refused_with_their_name():
    with pytest.raises(ValidationError) as err:
        spec(training={"learningRat": 0.1})
    assert "learningRat" in str(err.value)


def test_sources_must_use_a_known_scheme():
    with pytest.raises(ValidationError, match="model.source"):
        spec(model={"source": "gs://bucket/model"})
    with pytest.raises(ValidationError, match="dataset.source"):
        spec(dataset={"source": "http://example.com/train.jsonl"})  # plain http is not offered


SHA = "0" * 64


@pytest.mark.parametrize(
    "field, value",
    [
        ("dataset", {"source": "s3://my-bucket/data/train.jsonl", "credentialsSecretRef": {"name": "s3"}}),
        ("dataset", {"source": "https://data.example.com/train.jsonl?sig=abc", "sha256": SHA}),
        ("dataset", {"source": "hf://datasets/org/name/data/train-00000-of-00002.jsonl", "revision": "v1.0"}),
        ("dataset", {"source": "hf://datasets/org/name/train"}),
        (
            "dataset",
            {"source": "pvc://d/t.jsonl", "validationSource": "https://x.example/e.jsonl", "validationSha256": SHA},
        ),
        ("model", {"source": "s3://models/llama-3-8b/", "credentialsSecretRef": {"name": "s3", "endpointKey": "url"}}),
    ],
)
def test_downloaded_sources_in_their_documented_forms(field, value):
    assert spec(**{field: value}).to_wire()[field]["source"] == value["source"]


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("dataset", {"source": "https://x.example/train.jsonl"}, "set dataset.sha256"),
        (
            "dataset",
            {"source": "pvc://d/t.jsonl", "validationSource": "https://x.example/e.jsonl"},
            "set dataset.validationSha256",
        ),
        ("dataset", {"source": "https://x.example/train.jsonl", "sha256": "ABC"}, "sha256"),
        ("dataset", {"source": "s3://bucket/"}, "dataset.source"),  # a dataset is an object, not a prefix
        ("dataset", {"source": "s3://b/train.jsonl"}, "dataset.source"),  # bucket names have 3 characters or more
        ("dataset", {"source": "https://user:pw@x.example/t.jsonl", "sha256": SHA}, "dataset.source"),
        ("dataset", {"source": "hf://datasets/org/name"}, "dataset.source"),  # a file or a split is needed
        ("dataset", {"source": "s3://bucket/a/../../t.jsonl"}, "must not contain '.' or '..' path segments"),
        ("dataset", {"source": "https://x.example/a/../t.jsonl", "sha256": SHA}, "'.' or '..' path segments"),
        ("model", {"source": "hf://datasets/name"}, "a Hub dataset repo"),
        ("model", {"source": "s3://bucket/m", "credentialsSecretRef": {"name": "Bad_Name"}}, "credentialsSecretRef"),
    ],
)
def test_downloaded_sources_refused_outside_their_forms(field, value, fragment):
    with pytest.raises(ValidationError, match=fragment):
        spec(**{field: value})


def test_wire_format_is_camel_case_and_round_trips():
    s = spec(training={"maxSteps": 5, "learningRate": 1e-4})
    wire = s.to_wire()
    assert wire["training"]["maxSteps"] == 5 and "max_steps" not in wire["training"]
    assert FineTuneJobSpec.model_validate(wire) == s


def test_trainer_config_reads_what_the_operator_writes():
    cfg = TrainerConfig.model_validate(
        {
            "model": {"source": "/mnt/pvc/models/llama"},
            "dataset": {"source": "/mnt/pvc/data/train.jsonl"},
            "output": {"dir": "/mnt/pvc/out/ns/job"},
        }
    )
    assert cfg.reporting.termination_message_path == "/dev/termination-log"
    assert TrainerConfig.model_validate_json(json.dumps(cfg.to_wire())) == cfg


def test_termination_message_fits_the_kubelet_limit():
    summary = TrainerSummary(
        outcome="failed", reason="InvalidData", message="x" * 2048, metrics={f"m{i}": i for i in range(120)}
    )
    text = summary.to_termination_message()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert json.loads(text)["reason"] == "InvalidData"


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("dataset", {"source": "/etc/shadow"}, "an absolute path must name a file baked into the trainer image"),
        ("dataset", {"source": "/var/run/secrets/kubernetes.io/serviceaccount/token"}, "under /data/ or /models/"),
        ("model", {"source": "/data/../proc/self/environ"}, "must not contain '.' or '..' path segments"),
        ("dataset", {"source": "pvc://data/../../etc/passwd"}, "must not contain '.' or '..' path segments"),
    ],
)
def test_sources_only_in_the_documented_forms(field, value, fragment):
    with pytest.raises(ValidationError, match=fragment):
        spec(**{field: value})
    assert spec(dataset={"source": "/data/train.jsonl"}).dataset.source == "/data/train.jsonl"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"scheduling": {"nodeSelector": {"bad key!": "x"}}}, "nodeSelector"),
        ({"scheduling": {"nodeSelector": {"zone": "not a label value"}}}, "nodeSelector"),
        ({"podLabels": {"-leading-dash": "x"}}, "podLabels"),
        ({"podAnnotations": {"a/b/c": "x"}}, "podAnnotations"),
        (
            {"scheduling": {"tolerations": [{"operator": "Equal", "value": "x"}]}},
            "without key must use operator Exists",
        ),
        ({"scheduling": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}}, "must not set value"),
        ({"scheduling": {"tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]}}, "NoExecute"),
        ({"scheduling": {"priorityClassName": "Not_A_Name"}}, "priorityClassName"),
        ({"model": {"source": "hf://org/m", "tokenSecretRef": {"name": "other-ns/hf"}}}, "tokenSecretRef"),
    ],
)
def test_pod_level_fields_follow_the_pod_apis_rules(overrides, fragment):
    with pytest.raises(ValidationError, match=fragment):
        spec(**overrides)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("dataset", {"source": "hf://org/dataset"}, "dataset.source"),
        ("dataset", {"source": "builtin:alpaca"}, "dataset.source"),
        ("dataset", {"source": "pvc://d/t.jsonl", "validationSource": "hf://org/dataset"}, "validationSource"),
        ("evaluation", {"generalSource": "builtin:wikitext"}, "generalSource"),
        ("model", {"source": "builtin:minilm-l6", "adapter": "builtin:smollm2-135m-instruct"}, "model.adapter"),
        ("model", {"source": "hf://org/.."}, "must not contain '.' or '..' path segments"),
    ],
)
def test_each_source_field_takes_only_its_own_forms(field, value, fragment):
    with pytest.raises(ValidationError, match=fragment):
        spec(**{field: value})
    assert (
        spec(model={"source": "builtin:minilm-l6", "adapter": "hf://org/adapter"}).model.adapter == "hf://org/adapter"
    )
