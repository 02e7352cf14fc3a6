"""spec.serving: the combinations no serving manifest could satisfy are refused with one line saying
what to change (the CRD's CEL rules carry the same messages: tests/integration/operator/test_operator_crd.py),
the claim check the operator runs, and status.serving within the termination message."""

import json

import pytest
from pydantic import ValidationError

from finetune_api.protocol import TERMINATION_MESSAGE_LIMIT, TrainerSummary
from finetune_api.resource import FineTuneJobSpec
from finetune_api.serving import MESSAGES, ServingStatus, claim_access_problem, lora_rank_limit
from finetune_api.training import TrainerConfig

SFT = {
    "model": {"source": "builtin:smollm2-135m-instruct"},
    "dataset": {"source": "pvc://datasets/train.jsonl"},
    "output": {"pvc": "artifacts"},
}
CLASSIFIER = {**SFT, "method": "classification", "model": {"source": "builtin:minilm-l6"}}


def spec(base: dict, **overrides) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate({**base, **overrides})


def test_serving_defaults_to_every_fitting_path_with_one_replica():
    s = spec(SFT).serving
    assert (s.runtimes, s.replicas, s.max_lora_rank) == (None, 1, None)
    assert spec(SFT).to_wire()["serving"] == {"replicas": 1}


@pytest.mark.parametrize(
    "base, overrides, key",
    [
        (CLASSIFIER, {"serving": {"runtimes": ["vllm"]}, "output": {"pvc": "a", "merge": True}}, "classification-llm"),
        (CLASSIFIER, {"serving": {"runtimes": ["kaito"]}}, "classification-llm"),
        (CLASSIFIER, {"serving": {"runtimes": ["kserve"]}}, "classification-merge"),
        (SFT, {"serving": {"maxLoraRank": 8}, "peft": {"r": 16}}, "rank-below-r"),
        (SFT, {"serving": {"runtimes": ["vllm"]}, "peft": {"r": 1024}}, "rank-above-max"),
        (SFT, {"serving": {"runtimes": ["kaito"]}, "model": {"source": "pvc://models/llama"}}, "kaito-base"),
        (SFT, {"serving": {"runtimes": ["vllm"]}, "model": {"source": "/models/llama"}}, "image-base"),
        (SFT, {"serving": {"runtimes": ["vllm"]}, "model": {"source": "hf://o/m", "ggufFile": "m.gguf"}}, "gguf-base"),
    ],
)
def test_impossible_serving_requests_are_refused_with_what_to_change(base, overrides, key):
    with pytest.raises(ValidationError) as err:
        spec(base, **overrides)
    assert MESSAGES[key] in str(err.value)


@pytest.mark.parametrize(
    "base, overrides",
    [
        (CLASSIFIER, {"serving": {"runtimes": ["kserve"]}, "output": {"pvc": "a", "merge": True}}),
        (CLASSIFIER, {"serving": {"runtimes": []}}),
        (SFT, {"serving": {"runtimes": ["vllm", "kserve", "kaito"], "maxLoraRank": 16}}),
        (SFT, {"serving": {"runtimes": ["vllm", "kserve"]}, "model": {"source": "pvc://models/llama"}}),
        (SFT, {"peft": {"r": 1024}}),  # no runtimes asked for: the manifests are left out, with a note
        # a continued adapter's own rank counts (the trainer reads it), not peft.r
        (SFT, {"serving": {"maxLoraRank": 8}, "model": {"source": "hf://o/m", "adapter": "pvc://a/sft"}}),
    ],
)
def test_fitting_serving_requests_pass(base, overrides):
    spec(base, **overrides)


def test_a_runtime_listed_twice_is_refused():
    with pytest.raises(ValidationError, match=MESSAGES["twice"]):
        spec(SFT, serving={"runtimes": ["vllm", "vllm"]})


def test_max_lora_rank_is_one_of_vllms_values():
    with pytest.raises(ValidationError, match="maxLoraRank"):
        spec(SFT, serving={"maxLoraRank": 24})
    assert [lora_rank_limit(r) for r in (1, 4, 8, 16, 17, 300, 512, 513)] == [1, 8, 8, 16, 32, 320, 512, None]


def test_the_trainer_config_applies_the_rules_that_do_not_read_the_source():
    """The trainer's config holds the mounted path; the rules on model.source are the spec's alone."""
    wire = {
        "method": "classification",
        "model": {"source": "/mnt/pvc/models/bert"},  # the mounted path the trainer reads
        "dataset": {"source": "/mnt/pvc/data/train.jsonl"},
        "output": {"dir": "/mnt/pvc/artifacts/x", "merge": True},
        "serving": {"runtimes": ["kserve"]},
        "origin": {
            "model": "pvc://models/bert",
            "dataset": "pvc://data/train.jsonl",
            "output": "pvc://artifacts/x",
            "name": "x",
        },
    }
    assert TrainerConfig.model_validate(wire).origin is not None
    wire["serving"] = {"runtimes": ["vllm"]}
    with pytest.raises(ValidationError, match="vllm and kaito serve causal-LM adapters"):
        TrainerConfig.model_validate(wire)


@pytest.mark.parametrize(
    "replicas, modes, problem",
    [
        (1, ["ReadWriteOnce"], None),
        (3, ["ReadWriteMany"], None),
        (3, ["ReadOnlyMany", "ReadWriteOnce"], None),
        (3, ["ReadWriteOnce"], "(it is ReadWriteOnce)"),
        (2, ["ReadWriteOncePod"], "(it is ReadWriteOncePod)"),
    ],
)
def test_claim_access_problem_for_several_replicas(replicas, modes, problem):
    message = claim_access_problem(replicas, "artifacts", modes)
    if problem is None:
        assert message is None
    else:
        assert message is not None and problem in message and "\n" not in message
        assert message.startswith(f"serving.replicas {replicas} needs the output claim 'artifacts'")
        assert "set serving.replicas: 1" in message


def test_the_serving_block_fits_the_termination_message_and_is_shortened_last():
    serving = ServingStatus(
        adapter_uri="pvc://artifacts/" + "p" * 900,
        base_model="hf://org/" + "m" * 900,
        base_model_sha256="ab" * 32,
        task_type="CAUSAL_LM",
        lora_rank=16,
        target_modules=[f"module_{i}" for i in range(64)],
        note="n" * 500,
    )
    summary = TrainerSummary(outcome="succeeded", message="x" * 2000, metrics={"evalLoss": 1.0}, serving=serving)
    text = summary.to_termination_message()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    back = TrainerSummary.model_validate(json.loads(text))
    assert back.serving is not None and back.serving.adapter_uri == serving.adapter_uri
    small = TrainerSummary(outcome="succeeded", serving=serving.model_copy(update={"target_modules": ["q_proj"]}))
    assert TrainerSummary.model_validate_json(small.to_termination_message()) == small  # untouched when it fits
