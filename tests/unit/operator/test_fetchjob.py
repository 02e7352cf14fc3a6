"""The fetch Job (pure builder) and what the trainer Job does with fetched sources."""

import dataclasses
import json

import pytest

from finetune_api import contract, runconfig
from finetune_api.protocol import fetch_entry_name
from finetune_operator import builders
from finetune_operator.fetchjob import CA_DIR, FETCH_TTL_SECONDS, command, fetch_job

SHA = "ab" * 32


@pytest.fixture
def remote(ftj):
    ftj["spec"]["model"] = {
        "source": "hf://acme/tiny-llm",
        "revision": "v1",
        "tokenSecretRef": {"name": "hf", "key": "tok"},
    }
    ftj["spec"]["dataset"] = {
        "source": "https://files.example/data/train.jsonl",
        "sha256": SHA,
        "format": "chat",
        "validationSource": "s3://bucket-1/eval/eval.jsonl",
        "credentialsSecretRef": {"name": "s3", "endpointKey": "url"},
    }
    return ftj


@pytest.fixture
def cached(cfg):
    return dataclasses.replace(
        cfg, model_cache_claim="model-cache", hub_endpoint="https://hub.example", ca_bundle="kube-root-ca.crt/ca.crt"
    )


def containers(job):
    return {c["name"]: c for c in job["spec"]["template"]["spec"]["containers"]}


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def allowed_by_contract(container, pinned):
    """The chart policy's rules for one container (templates/admission-policies.yaml), in Python."""
    cmd = container["command"]
    assert any(
        len(shape) == len(cmd) and all(s in (a, contract.ANY_ARGUMENT) for a, s in zip(cmd, shape, strict=True))
        for shape in contract.COMMANDS
    ), cmd
    assert set(contract.REQUIRED_ENV) <= {e["name"] for e in container["env"]}
    for e in container["env"]:
        source = e.get("valueFrom") or {}
        if "secretKeyRef" in source:
            assert e["name"] in contract.SECRET_ENV
        elif "fieldRef" in source:
            assert contract.FIELD_ENV[e["name"]] == source["fieldRef"]["fieldPath"]
        elif e["name"] in contract.PINNED_ENV:
            assert pinned.get(e["name"]) == e["value"], e
        else:
            assert e["name"] in contract.LITERAL_ENV, e["name"]


def test_no_fetch_job_when_every_source_is_mounted_or_in_the_image(ftj, cfg):
    assert fetch_job(ftj, builders.parse_spec(ftj), cfg) is None
    ftj["spec"]["model"]["source"] = "builtin:smollm2-135m-instruct"
    assert fetch_job(ftj, builders.parse_spec(ftj), cfg) is None


def test_one_container_per_download_each_within_the_contract(remote, cached):
    spec = builders.parse_spec(remote)
    job = fetch_job(remote, spec, cached)
    assert job["metadata"]["name"] == "demo-fetch"
    assert job["metadata"]["labels"][builders.LABEL_COMPONENT] == "fetch"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1111-2222"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == FETCH_TTL_SECONDS
    pod = job["spec"]["template"]["spec"]
    # the run's own identity: the policy maps <name>-fetch to <name>-trainer
    assert pod["serviceAccountName"] == "demo-trainer" and pod["automountServiceAccountToken"] is True
    assert list(containers(job)) == ["model", "dataset", "validation"]
    pinned = {
        "HF_ENDPOINT": "https://hub.example",
        "FINETUNE_MODEL_CACHE": "model-cache",
        "FINETUNE_CA_BUNDLE": f"{CA_DIR}/ca.crt",
    }
    for c in containers(job).values():
        allowed_by_contract(c, pinned)
        assert c["image"] == "trainer:test"  # the operator's image, never spec.image
        assert c["securityContext"]["readOnlyRootFilesystem"] and not c["securityContext"]["allowPrivilegeEscalation"]


def test_commands_name_the_planned_destinations(remote, cached):
    spec = builders.parse_spec(remote)
    c = containers(fetch_job(remote, spec, cached))
    assert c["model"]["command"] == [
        *("finetune-train", "fetch", "--source", "hf://acme/tiny-llm", "--into", runconfig.MODEL_CACHE_MOUNT),
        *("--kind", "model", "--revision", "v1"),
    ]
    data_dir = "/mnt/pvc/artifacts/.finetune-fetch"
    assert c["dataset"]["command"] == [
        *("finetune-train", "fetch", "--source", "https://files.example/data/train.jsonl", "--into", data_dir),
        *("--kind", "dataset", "--revision", "", "--sha256", SHA, "--format", "chat", "--method", "sft"),
    ]
    assert c["validation"]["command"][3] == "s3://bucket-1/eval/eval.jsonl"
    assert c["validation"]["command"][10:12] == ["--sha256", ""]


def test_each_container_gets_only_its_sources_credentials(remote, cached):
    c = containers(fetch_job(remote, builders.parse_spec(remote), cached))
    model, data, validation = env_of(c["model"]), env_of(c["dataset"]), env_of(c["validation"])
    assert model["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "tok"}}
    assert model["HF_ENDPOINT"] == "https://hub.example"
    assert not {"HF_TOKEN", "HF_ENDPOINT"} & set(data) and not any(k.startswith("AWS_") for k in data)
    assert validation["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "s3", "key": "AWS_ACCESS_KEY_ID", "optional": False}
    }
    assert validation["AWS_ENDPOINT_URL"] == {"secretKeyRef": {"name": "s3", "key": "url", "optional": True}}
    assert validation["AWS_REGION"]["secretKeyRef"]["optional"] is True
    assert "HF_TOKEN" not in validation


def test_the_cache_is_written_by_the_fetch_and_read_only_in_the_trainer(remote, cached):
    spec = builders.parse_spec(remote)
    fetch_pod = fetch_job(remote, spec, cached)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in fetch_pod["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "model-cache", "readOnly": False}
    assert volumes["output"]["persistentVolumeClaim"] == {"claimName": "artifacts"}
    assert volumes["ca"]["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    trainer = builders.job(remote, spec, cached)
    tpod = trainer["spec"]["template"]["spec"]
    (mount,) = [m for m in tpod["containers"][0]["volumeMounts"] if m["name"] == "model-cache"]
    assert mount == {"name": "model-cache", "mountPath": runconfig.MODEL_CACHE_MOUNT, "readOnly": True}
    (vol,) = [v for v in tpod["volumes"] if v["name"] == "model-cache"]
    assert vol["persistentVolumeClaim"]["readOnly"] is True
    allowed_by_contract(tpod["containers"][0], {"FINETUNE_MODEL_CACHE": "model-cache"})


def test_the_trainers_config_names_the_fetched_entries(remote, cached):
    spec = builders.parse_spec(remote)
    config = json.loads(builders.config_map(remote, spec, cached)["data"]["config.json"])
    entry = fetch_entry_name("hf://acme/tiny-llm", "v1")
    assert config["model"]["source"] == f"{runconfig.MODEL_CACHE_MOUNT}/{entry}"
    assert "revision" not in config["model"] and "credentialsSecretRef" not in config["dataset"]
    data_entry = fetch_entry_name("https://files.example/data/train.jsonl", None, SHA)
    assert config["dataset"]["source"] == f"/mnt/pvc/artifacts/.finetune-fetch/{data_entry}"
    assert config["dataset"]["validationSource"].startswith(
        "/mnt/pvc/artifacts/.finetune-fetch/bucket-1-eval-eval.jsonl-"
    )
    # what the trainer derives from its FineTuneJob with FINETUNE_MODEL_CACHE set: the same config
    derived = runconfig.trainer_config(spec, "team-a", "demo", "1111-2222", cached.status_patch_interval_seconds, True)
    assert derived.to_wire() == config


def test_without_a_cache_claim_models_go_onto_the_output_claim(remote, cfg):
    spec = builders.parse_spec(remote)
    job = fetch_job(remote, spec, cfg)
    assert "model-cache" not in {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}
    assert containers(job)["model"]["command"][5] == "/mnt/pvc/artifacts/.finetune-fetch"
    assert "HF_ENDPOINT" not in env_of(containers(job)["model"])  # huggingface.co
    trainer = builders.job(remote, spec, cfg)["spec"]["template"]["spec"]
    assert "model-cache" not in {v["name"] for v in trainer["volumes"]}
    assert "FINETUNE_MODEL_CACHE" not in env_of(trainer["containers"][0])


def test_an_s3_model_directory_uses_the_models_credentials(ftj, cached):
    ftj["spec"]["model"] = {"source": "s3://models/tiny/", "credentialsSecretRef": {"name": "store"}}
    c = containers(fetch_job(ftj, builders.parse_spec(ftj), cached))
    assert list(c) == ["model"]
    assert env_of(c["model"])["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "store"
    assert "HF_ENDPOINT" not in env_of(c["model"])


def test_fetch_plans_only_for_downloaded_sources(remote):
    spec = builders.parse_spec(remote)
    plans = runconfig.fetch_plans(spec, model_cache=False)
    assert [(p.field, p.kind, p.revision, p.sha256, p.in_cache) for p in plans] == [
        ("model.source", "model", "v1", None, False),
        ("dataset.source", "dataset", None, SHA, False),
        ("dataset.validationSource", "dataset", None, None, False),
    ]
    remote["spec"]["dataset"] = {"source": "hf://datasets/acme/logs/train", "revision": "r2", "format": "chat"}
    (_, data) = runconfig.fetch_plans(builders.parse_spec(remote), model_cache=True)
    assert (data.revision, data.into) == ("r2", "/mnt/pvc/artifacts/.finetune-fetch")
    assert command(data, builders.parse_spec(remote))[9] == "r2"
