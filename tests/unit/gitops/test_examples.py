"""examples/*.yaml: every FineTuneJob is a valid spec, and what the examples reference exists.

(The server-side check, `kubectl apply --dry-run=server`, is tests/integration/chart/test_examples_server.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from finetune_api import API_VERSION, KIND
from finetune_api.resource import FineTuneJobSpec

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
# Files of this task; examples/log-intent/ is the demo's own.
EXPECTED = {"pvc.yaml", "sft-qlora-pvc.yaml", "dpo-from-sft.yaml", "hub-model-token.yaml", "kueue-queued.yaml"}
JOB_EXAMPLES = sorted(EXPECTED - {"pvc.yaml"})
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def jobs(name: str) -> list[dict]:
    return [d for d in docs(name) if d["kind"] == KIND]


def claims_defined() -> set[str]:
    return {d["metadata"]["name"] for d in docs("pvc.yaml") if d["kind"] == "PersistentVolumeClaim"}


def test_the_examples_exist():
    present = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert EXPECTED <= present, EXPECTED - present


@pytest.mark.parametrize("name", JOB_EXAMPLES)
def test_example_is_a_valid_finetunejob(name):
    found = jobs(name)
    assert found, f"{name} has no FineTuneJob"
    for job in found:
        assert job["apiVersion"] == API_VERSION
        assert DNS_NAME.match(job["metadata"]["name"]) and len(job["metadata"]["name"]) <= 63
        assert "namespace" not in job["metadata"], "examples are applied with -n <namespace>"
        FineTuneJobSpec.model_validate(job["spec"])


@pytest.mark.parametrize("name", JOB_EXAMPLES)
def test_example_uses_only_the_claims_of_pvc_yaml(name):
    defined = claims_defined()
    for job in jobs(name):
        spec = job["spec"]
        used = {spec["output"]["pvc"]}
        for source in _sources(spec):
            if source.startswith("pvc://"):
                used.add(source.removeprefix("pvc://").split("/")[0])
        assert used <= defined, f"{name} uses claims {used - defined} that examples/pvc.yaml does not create"


def _sources(spec: dict) -> list[str]:
    model, dataset = spec["model"], spec["dataset"]
    return [
        s
        for s in (
            model.get("source"),
            model.get("adapter"),
            dataset.get("source"),
            dataset.get("validationSource"),
            spec.get("evaluation", {}).get("generalSource"),
        )
        if s
    ]


def test_dpo_example_continues_from_the_sft_examples_output():
    (sft,) = jobs("sft-qlora-pvc.yaml")
    (dpo,) = jobs("dpo-from-sft.yaml")
    assert sft["spec"]["method"] == "sft" and sft["spec"]["peft"]["type"] == "qlora"
    assert dpo["spec"]["method"] == "dpo" and dpo["spec"]["dataset"]["format"] == "preference"
    out = sft["spec"]["output"]
    assert dpo["spec"]["model"]["adapter"] == f"pvc://{out['pvc']}/{out['path']}"
    assert dpo["spec"]["model"]["source"] == sft["spec"]["model"]["source"]
    assert FineTuneJobSpec.model_validate(dpo["spec"]).model.adapter == dpo["spec"]["model"]["adapter"]


def test_hub_example_ships_the_secret_it_references():
    objects = docs("hub-model-token.yaml")
    secrets = {d["metadata"]["name"]: d for d in objects if d["kind"] == "Secret"}
    (job,) = jobs("hub-model-token.yaml")
    ref = job["spec"]["model"]["tokenSecretRef"]
    assert job["spec"]["model"]["source"].startswith("hf://")
    assert ref["key"] in secrets[ref["name"]]["stringData"]
    # The Secret comes first so that `kubectl apply -f` creates it before the run needs it.
    assert [d["kind"] for d in objects] == ["Secret", KIND]


def test_kueue_example_names_a_queue():
    (job,) = jobs("kueue-queued.yaml")
    assert job["spec"]["scheduling"]["queueName"]


def test_sft_example_is_qlora_on_a_pvc_model():
    (job,) = jobs("sft-qlora-pvc.yaml")
    spec = FineTuneJobSpec.model_validate(job["spec"])
    assert spec.model.source.startswith("pvc://") and spec.peft.quantization.quant_type == "nf4"
