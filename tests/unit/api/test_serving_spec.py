"""spec.serving: the combinations no serving manifest could satisfy are refused with one line saying
what to change (the CRD's CEL rules carry the same messages: tests/integration/operator/test_operator_crd.py),
the claim check the operator runs, and a completion record 0.1.0 still reads."""

import json

import pytest
from pydantic import ValidationError

from finetune_api.protocol import MAX_WARNINGS, TERMINATION_MESSAGE_LIMIT, TrainerSummary, success_note
from finetune_api.resource import FineTuneJobSpec
from finetune_api.serving import MESSAGES, claim_access_problem, lora_rank_limit
from finetune_api.training import TrainerConfig
from support.protocol_v010 import TrainerSummaryV010

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


def test_the_completion_record_stays_readable_by_0_1_0_and_ignores_what_it_does_not_know():
    """status.serving and the warnings do not ride in the termination message: 0.1.0 refuses fields it
    does not know, and a rollback may leave it to read a newer trainer's record."""
    warnings = [f"label {i} has one example: it became a class" + "!" * 400 for i in range(5)]
    summary = TrainerSummary(outcome="succeeded", message=success_note(warnings), metrics={"evalLoss": 1.0})
    assert summary.message is not None and summary.message.count("warning: ") == MAX_WARNINGS
    text = summary.to_termination_message()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert TrainerSummaryV010.model_validate_json(text).message == summary.message
    later = {**json.loads(text), "serving": {"adapterUri": "pvc://artifacts/x"}, "somethingNew": 1}
    assert TrainerSummary.model_validate(later) == summary  # a later trainer's fields are ignored here
    with pytest.raises(ValidationError):
        TrainerSummaryV010.model_validate(later)
    assert success_note([]) is None
