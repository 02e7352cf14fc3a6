"""The serving manifests (pure functions): which paths fit an adapter, and each manifest's shape.
They are applied (server-side dry run) against the real KServe and KAITO CRDs in tests/e2e."""

from __future__ import annotations

import json

import pytest
import yaml

from finetune_api.serving import ServingRuntime
from finetune_api.training import TrainerConfig
from finetune_trainer import manifests as m
from finetune_trainer.provenance import BaseModelRef

HUB_BASE = BaseModelRef(
    source="builtin:smollm2-135m-instruct",
    reference="hf://HuggingFaceTB/SmolLM2-135M-Instruct",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    sha256="b1" * 32,
    weights="SmolLM2-135M-Instruct.Q4_1.gguf",
    provenance="a dequantized GGUF",
)
CLAIM_BASE = BaseModelRef(source="pvc://models/llama-8b", reference="pvc://models/llama-8b", sha256="aa" * 32)
LM = m.AdapterFacts(task_type="CAUSAL_LM", rank=16, target_modules=["k_proj", "q_proj"])
CLS = m.AdapterFacts(task_type="SEQ_CLS", rank=8, target_modules=["query", "value"])


def config(
    method: str = "sft",
    merge: bool = False,
    serving: dict | None = None,
    model: dict | None = None,
    source: str = "builtin:smollm2-135m-instruct",
    **origin,
) -> TrainerConfig:
    """A TrainerConfig as the operator writes it; ``source``: spec.model.source, ``origin``: more origin fields."""
    return TrainerConfig.model_validate(
        {
            "method": method,
            "model": {"source": "/mnt/pvc/models/llama-8b", **(model or {})},
            "dataset": {"source": "/mnt/pvc/datasets/train.jsonl"},
            "output": {"dir": "/mnt/pvc/artifacts/team/tuned", "owner": "team/tuned", "merge": merge},
            "serving": serving or {},
            "origin": {
                "model": source,
                "dataset": "pvc://datasets/train.jsonl",
                "output": "pvc://artifacts/team/tuned",
                "name": origin.pop("name", "tuned"),
                **origin,
            },
        }
    )


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_a_causal_lm_adapter_on_a_hub_base_fits_vllm_kserve_and_kaito():
    plan = m.plan_serving(config(), HUB_BASE, LM)
    assert plan is not None and plan.runtimes == (ServingRuntime.VLLM, ServingRuntime.KSERVE, ServingRuntime.KAITO)
    assert (plan.replicas, plan.max_lora_rank, plan.namespace) == (1, 16, "team")
    assert sorted(m.render(plan)) == ["kaito-workspace.yaml", "kserve-llminferenceservice.yaml", "vllm.yaml"]
    status = m.serving_status(plan, list(plan.runtimes))
    assert status.adapter_uri == "pvc://artifacts/team/tuned"
    assert status.base_model == "hf://HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (status.task_type, status.lora_rank, status.target_modules) == ("CAUSAL_LM", 16, ["k_proj", "q_proj"])
    assert status.manifests == "pvc://artifacts/team/tuned/serving"
    assert status.note and "differ from the upstream ones" in status.note  # a builtin with no Hub revision


def test_vllm_deployment_mounts_the_claim_read_only_and_names_the_base_in_lora_modules():
    plan = m.plan_serving(config(), HUB_BASE, LM)
    assert plan is not None
    deployment, service = docs(m.render(plan)["vllm.yaml"])
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    assert deployment["metadata"]["namespace"] == "team" and deployment["metadata"]["name"] == "tuned-vllm"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "HuggingFaceTB/SmolLM2-135M-Instruct" and "--enable-lora" in args
    assert args[args.index("--max-lora-rank") + 1] == "16"
    module = json.loads(args[args.index("--lora-modules") + 1])
    assert module == {
        "name": "tuned",
        "path": "/mnt/pvc/artifacts/team/tuned",
        "base_model_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
    }
    assert args[args.index("--served-model-name") + 1] == module["base_model_name"]
    claims = {v["persistentVolumeClaim"]["claimName"]: v for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert list(claims) == ["artifacts"] and claims["artifacts"]["persistentVolumeClaim"]["readOnly"] is True
    mount = next(x for x in container["volumeMounts"] if x["name"] == claims["artifacts"]["name"])
    assert mount == {"name": mount["name"], "mountPath": "/mnt/pvc/artifacts", "readOnly": True}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["securityContext"]["runAsNonRoot"] is True  # restricted Pod Security
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert "&id" not in m.render(plan)["vllm.yaml"]  # plain YAML, no anchors


def test_kserve_llm_inference_service_carries_the_pvc_adapter_uri_and_max_rank():
    plan = m.plan_serving(config(serving={"maxLoraRank": 64}), HUB_BASE, LM)
    assert plan is not None
    (isvc,) = docs(m.render(plan)["kserve-llminferenceservice.yaml"])
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1alpha2", "LLMInferenceService")
    model = isvc["spec"]["model"]
    assert model["uri"] == "hf://HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model["lora"] == {"adapters": [{"name": "tuned", "uri": "pvc://artifacts/team/tuned"}], "maxRank": 64}
    assert model["name"] != model["lora"]["adapters"][0]["name"]  # KServe refuses an adapter named like its base


def test_kaito_workspace_takes_the_adapter_from_the_claim_volume():
    plan = m.plan_serving(config(), HUB_BASE, LM)
    assert plan is not None
    config_map, workspace = docs(m.render(plan)["kaito-workspace.yaml"])
    assert (workspace["apiVersion"], workspace["kind"]) == ("kaito.sh/v1beta1", "Workspace")
    inference = workspace["inference"]
    assert inference["preset"] == {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    (adapter,) = inference["adapters"]
    assert adapter["source"] == {
        "name": "tuned",
        "volumeSource": {"persistentVolumeClaim": {"claimName": "artifacts", "readOnly": True}},
    }
    assert inference["config"] == config_map["metadata"]["name"]
    vllm = yaml.safe_load(config_map["data"]["inference_config.yaml"])["vllm"]
    assert vllm["max-lora-rank"] == "16"  # KAITO reads these values as strings
    # KAITO mounts the whole claim at /mnt/adapter/<name>: vLLM is pointed at the adapter's directory in it
    assert json.loads(vllm["lora-modules"])["path"] == "/mnt/adapter/tuned/team/tuned"


def test_a_base_on_a_claim_is_mounted_and_kaito_is_left_out_with_a_note():
    plan = m.plan_serving(config(source="pvc://models/llama-8b"), CLAIM_BASE, LM)
    assert plan is not None and plan.runtimes == (ServingRuntime.VLLM, ServingRuntime.KSERVE)
    deployment, _ = docs(m.render(plan)["vllm.yaml"])
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "/mnt/pvc/models/llama-8b" and args[args.index("--served-model-name") + 1] == "models/llama-8b"
    claims = [v["persistentVolumeClaim"] for v in deployment["spec"]["template"]["spec"]["volumes"][:2]]
    assert claims == [{"claimName": "artifacts", "readOnly": True}, {"claimName": "models", "readOnly": True}]
    (isvc,) = docs(m.render(plan)["kserve-llminferenceservice.yaml"])
    assert isvc["spec"]["model"]["uri"] == "pvc://models/llama-8b"
    assert "kaito left out" in (m.serving_status(plan, list(plan.runtimes)).note or "")


def test_a_gated_hub_base_gets_its_token_everywhere():
    cfg = config(model={"tokenSecretRef": {"name": "hf", "key": "t"}}, source="hf://meta-llama/Llama-3.1-8B")
    base = BaseModelRef(
        "hf://meta-llama/Llama-3.1-8B", "hf://meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B", "abc"
    )
    plan = m.plan_serving(cfg, base, LM)
    assert plan is not None
    files = m.render(plan)
    env = docs(files["vllm.yaml"])[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}} in env
    args = docs(files["vllm.yaml"])[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--revision") + 1] == "abc"
    (isvc,) = docs(files["kserve-llminferenceservice.yaml"])
    assert isvc["spec"]["model"]["uri"] == "hf://meta-llama/Llama-3.1-8B:abc"
    assert isvc["spec"]["template"]["containers"][0]["env"][0]["name"] == "HF_TOKEN"
    workspace = docs(files["kaito-workspace.yaml"])[1]
    assert workspace["inference"]["preset"]["presetOptions"] == {"modelAccessSecret": "hf"}


def test_a_classifier_is_served_as_the_merged_model_on_kserves_huggingface_runtime():
    plan = m.plan_serving(config("classification", merge=True, source="builtin:minilm-l6"), HUB_BASE, CLS)
    assert plan is not None and plan.runtimes == (ServingRuntime.KSERVE,)
    files = m.render(plan)
    assert list(files) == ["kserve-inferenceservice.yaml"]
    (isvc,) = docs(files["kserve-inferenceservice.yaml"])
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "huggingface"}
    assert model["storageUri"] == "pvc://artifacts/team/tuned/merged"
    assert "--task=sequence_classification" in model["args"] and "--backend=huggingface" in model["args"]
    assert m.serving_status(plan, [ServingRuntime.KSERVE]).merged_uri == "pvc://artifacts/team/tuned/merged"


def test_a_classifier_without_the_merged_model_gets_no_manifest_and_a_note():
    plan = m.plan_serving(config("classification", source="builtin:minilm-l6"), HUB_BASE, CLS)
    assert plan is not None and plan.runtimes == () and m.render(plan) == {}
    status = m.serving_status(plan, [])
    assert status.runtimes == [] and status.manifests is None
    assert "set output.merge: true" in (status.note or "")


def test_a_rank_above_the_serving_limit_gets_no_llm_manifest():
    big = m.AdapterFacts("CAUSAL_LM", 1024, ["q_proj"])
    plan = m.plan_serving(config(), HUB_BASE, big)
    assert plan is not None and plan.runtimes == ()
    assert "LoRA rank 1024 is above the serving limit (512)" in (m.serving_status(plan, []).note or "")
    # a continued adapter's real rank above an explicit maxLoraRank: left out, not written to fail
    continued = config(serving={"maxLoraRank": 8}, model={"adapter": "/mnt/pvc/artifacts/sft"})
    plan = m.plan_serving(continued, HUB_BASE, LM)
    assert plan is not None and plan.runtimes == ()


def test_explicit_runtimes_are_kept_in_the_users_selection():
    plan = m.plan_serving(config(serving={"runtimes": ["kaito"]}), HUB_BASE, LM)
    assert plan is not None and plan.runtimes == (ServingRuntime.KAITO,)
    assert list(m.render(plan)) == ["kaito-workspace.yaml"]
    plan = m.plan_serving(config(serving={"runtimes": []}), HUB_BASE, LM)
    assert plan is not None and m.render(plan) == {}


@pytest.mark.parametrize(
    "modes, replicas",
    [(None, 1), (["ReadWriteOnce"], 1), (["ReadWriteMany"], 3), (["ReadOnlyMany"], 3)],
)
def test_several_replicas_only_on_a_claim_known_to_be_shared(modes, replicas):
    plan = m.plan_serving(config(serving={"replicas": 3}, output_access_modes=modes), HUB_BASE, LM)
    assert plan is not None and plan.replicas == replicas
    deployment = docs(m.render(plan)["vllm.yaml"])[0]
    (isvc,) = docs(m.render(plan)["kserve-llminferenceservice.yaml"])
    assert deployment["spec"]["replicas"] == isvc["spec"]["replicas"] == replicas
    note = m.serving_status(plan, list(plan.runtimes)).note or ""
    assert ("replicas 3 reduced to 1" in note) == (replicas == 1)


def test_object_names_are_dns_labels():
    assert m.dns_label("log-intent") == "log-intent"
    assert m.dns_label("v1.2-tuned") == "v1-2-tuned"
    assert m.dns_label("7b-sft") == "ftj-7b-sft"
    plan = m.plan_serving(config(name="7b.sft"), HUB_BASE, LM)
    assert plan is not None
    deployment, service = docs(m.render(plan)["vllm.yaml"])
    assert service["metadata"]["name"] == "ftj-7b-sft-vllm"
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert json.loads(args[args.index("--lora-modules") + 1])["name"] == "7b.sft"  # the adapter keeps its name


def test_no_plan_outside_the_operator():
    cfg = config().model_copy(update={"origin": None})
    assert m.plan_serving(cfg, HUB_BASE, LM) is None
