"""Serving manifests written next to the adapter (``serving/``), and the serving facts for status.

Pure functions: :func:`plan_serving` decides which serving paths fit the finished adapter (the
spec's ``serving`` block, the adapter's task type and rank, the base model's reference, the
claim's access modes) and :func:`render` turns the plan into ready-to-apply YAML:

* ``vllm.yaml``: a Deployment running ``vllm serve`` with the artifacts claim mounted read-only,
  ``--enable-lora``, ``--lora-modules`` (JSON, with ``base_model_name``) and ``--max-lora-rank``,
  and its Service;
* ``kserve-llminferenceservice.yaml``: a KServe LLMInferenceService with the adapter's ``pvc://`` URI;
* ``kaito-workspace.yaml``: a KAITO Workspace whose adapter comes from the claim
  (``inference.adapters[].source.volumeSource``) and the ConfigMap with its vLLM arguments;
* ``kserve-inferenceservice.yaml`` (classifiers): a KServe InferenceService on the merged model,
  Hugging Face runtime, ``sequence_classification``.

A path that does not fit is left out with a one-line note (status.serving.note), never written to
fail later.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

import yaml

from finetune_api.serving import (
    SHARED_ACCESS_MODES,
    ServingRuntime,
    ServingStatus,
    lora_rank_limit,
)
from finetune_api.training import SecretKeyRef, TrainerConfig

from .provenance import BaseModelRef

VLLM_IMAGE = "vllm/vllm-openai:v0.17.1"
VLLM_PORT = 8000
PVC_MOUNT_ROOT = "/mnt/pvc"  # the claims' mount points, as in the trainer pod
KAITO_ADAPTER_ROOT = "/mnt/adapter"  # where KAITO mounts an adapter's volume (/mnt/adapter/<source name>)
CAUSAL_LM, SEQ_CLS = "CAUSAL_LM", "SEQ_CLS"
LLM_RUNTIMES = (ServingRuntime.VLLM, ServingRuntime.KSERVE, ServingRuntime.KAITO)
FILES = {
    ServingRuntime.VLLM: "vllm.yaml",
    ServingRuntime.KSERVE: "kserve-llminferenceservice.yaml",
    ServingRuntime.KAITO: "kaito-workspace.yaml",
}
CLASSIFIER_FILE = "kserve-inferenceservice.yaml"
DESCRIPTIONS = {
    "vllm.yaml": "a vLLM Deployment and Service (one GPU per replica), the adapter from the claim, read-only",
    "kserve-llminferenceservice.yaml": "a KServe LLMInferenceService with the adapter's pvc:// URI",
    "kaito-workspace.yaml": "a KAITO Workspace with the adapter's volume, and the ConfigMap of its vLLM arguments",
    CLASSIFIER_FILE: "a KServe InferenceService on the merged model (Hugging Face runtime, sequence_classification)",
}


@dataclass(frozen=True)
class AdapterFacts:
    """The saved adapter, from its adapter_config.json."""

    task_type: str
    rank: int
    target_modules: list[str]

    @classmethod
    def from_adapter_config(cls, cfg: dict) -> AdapterFacts:
        targets = cfg.get("target_modules") or []
        return cls(
            task_type=str(cfg.get("task_type") or CAUSAL_LM),
            rank=int(cfg["r"]),
            target_modules=[targets] if isinstance(targets, str) else sorted(targets),
        )


@dataclass(frozen=True)
class ServingPlan:
    """What to write and report: the adapter on its claim, the base model and the paths that fit."""

    name: str
    """The FineTuneJob's name: the adapter's name in every server."""
    namespace: str | None
    adapter_uri: str
    base: BaseModelRef
    facts: AdapterFacts
    runtimes: tuple[ServingRuntime, ...]
    replicas: int
    max_lora_rank: int
    token: SecretKeyRef | None = None
    merged: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def object_name(self) -> str:
        """``name`` as a DNS-1035 label (Services and the servers' own objects need one)."""
        return dns_label(self.name)

    @property
    def served_base_name(self) -> str:
        """The base model's name in the OpenAI API (``--served-model-name``, ``base_model_name``)."""
        return self.base.hub_id or self.base.reference.removeprefix("pvc://")


def dns_label(name: str) -> str:
    """A DNS-1035 label from a DNS subdomain name: dots become dashes, a leading digit gets ``ftj-``."""
    label = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    return label if label[:1].isalpha() else f"ftj-{label}"


def parse_pvc(uri: str) -> tuple[str, str]:
    """``pvc://claim/some/path`` -> ("claim", "some/path")."""
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path.strip("/")


def mount_path(uri: str) -> str:
    """Where a ``pvc://`` location is inside a pod that mounts its claim under /mnt/pvc/<claim>."""
    claim, path = parse_pvc(uri)
    return posixpath.join(PVC_MOUNT_ROOT, claim, path) if path else posixpath.join(PVC_MOUNT_ROOT, claim)


# --- the plan -------------------------------------------------------------------------------------


def plan_serving(config: TrainerConfig, base: BaseModelRef, facts: AdapterFacts) -> ServingPlan | None:
    """Which serving paths fit; None when the output is not on a claim (the trainer ran outside the operator)."""
    origin = config.origin
    if origin is None:
        return None
    notes: list[str] = []
    fitting = _fitting(config, base, facts, notes)
    requested = config.serving.runtimes
    runtimes = tuple(r for r in (requested if requested is not None else fitting) if r in fitting)
    replicas = _replicas(config.serving.replicas, origin.output_access_modes, notes)
    owner = config.output.owner or ""
    namespace = owner.partition("/")[0] if "/" in owner else None
    return ServingPlan(
        name=origin.name,
        namespace=namespace,
        adapter_uri=origin.output,
        base=base,
        facts=facts,
        runtimes=runtimes,
        replicas=replicas,
        max_lora_rank=config.serving.max_lora_rank or lora_rank_limit(facts.rank) or facts.rank,
        token=config.model.token_secret_ref,
        merged=config.output.merge,
        notes=tuple(notes),
    )


def _fitting(config: TrainerConfig, base: BaseModelRef, facts: AdapterFacts, notes: list[str]) -> list[ServingRuntime]:
    """The serving paths this adapter and base fit, with a note for each reason one does not."""
    if facts.task_type == SEQ_CLS:
        if not config.output.merge:
            notes.append("a classifier is served as the merged model: set output.merge: true for a KServe manifest")
            return []
        return [ServingRuntime.KSERVE]
    limit = config.serving.max_lora_rank or lora_rank_limit(facts.rank)
    if limit is None or limit < facts.rank:
        notes.append(f"LoRA rank {facts.rank} is above the serving limit ({limit or 512}): no LLM server manifests")
        return []
    if not base.reference.startswith(("hf://", "pvc://", "s3://")):
        notes.append("the base model is a path inside the trainer image: no serving manifests")
        return []
    if config.model.gguf_file:
        notes.append("a GGUF base (model.ggufFile) has no safetensors for the servers: no serving manifests")
        return []
    if base.reference.startswith("s3://"):
        notes.append("vllm and kaito left out: they load the base from the Hub or a claim, KServe reads s3://")
        return [ServingRuntime.KSERVE]
    if not base.on_hub:
        notes.append("kaito left out: KAITO downloads its base model by Hub id, and this base is on a claim")
        return [ServingRuntime.VLLM, ServingRuntime.KSERVE]
    return list(LLM_RUNTIMES)


def _replicas(requested: int, access_modes: list[str] | None, notes: list[str]) -> int:
    if requested <= 1:
        return 1
    if access_modes and any(m in SHARED_ACCESS_MODES for m in access_modes):
        return requested
    why = f"it is {', '.join(access_modes)}" if access_modes else "its access modes were not checked"
    notes.append(f"replicas {requested} reduced to 1: the output claim must be ReadOnlyMany or ReadWriteMany ({why})")
    return 1


def serving_status(plan: ServingPlan, written: list[ServingRuntime]) -> ServingStatus:
    """status.serving: the facts a serving stack consumes."""
    notes = list(plan.notes)
    if plan.base.provenance and plan.base.revision is None and plan.base.source.startswith("builtin:"):
        notes.append("trained on weights that differ from the upstream ones (see README.md)")
    return ServingStatus(
        adapter_uri=plan.adapter_uri,
        base_model=plan.base.reference,
        base_model_revision=plan.base.revision,
        base_model_sha256=plan.base.sha256,
        task_type=plan.facts.task_type,
        lora_rank=plan.facts.rank,
        target_modules=plan.facts.target_modules,
        runtimes=written,
        manifests=f"{plan.adapter_uri}/serving" if written else None,
        merged_uri=f"{plan.adapter_uri}/merged" if plan.merged else None,
        note="; ".join(notes)[:512] or None,
    )


# --- rendering ------------------------------------------------------------------------------------


def render(plan: ServingPlan) -> dict[str, str]:
    """File name (under serving/) -> YAML, for every serving path of the plan."""
    if plan.facts.task_type == SEQ_CLS:
        return {CLASSIFIER_FILE: _dump(plan, "kserve", [kserve_inference_service(plan)])} if plan.runtimes else {}
    builders = {
        ServingRuntime.VLLM: vllm_objects,
        ServingRuntime.KSERVE: lambda p: [kserve_llm_inference_service(p)],
        ServingRuntime.KAITO: kaito_objects,
    }
    return {FILES[r]: _dump(plan, r.value, builders[r](plan)) for r in plan.runtimes}


class _Dumper(yaml.SafeDumper):
    """Plain YAML: shared dicts (a Deployment's labels and its pods') are written out, not as anchors;
    multi-line strings (a ConfigMap's file) as literal blocks."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


def _dump(plan: ServingPlan, runtime: str, objects: list[dict]) -> str:
    where = f" -n {plan.namespace}" if plan.namespace else ""
    header = (
        f"# FineTuneJob {plan.name}'s adapter ({plan.adapter_uri}) served with {runtime}, by finetune-operator.\n"
        f"# kubectl apply{where} -f <this file>   (docs/serving.md: prerequisites, GPUs, tokens for gated bases)\n"
    )
    return header + yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=1000)


def _metadata(plan: ServingPlan, name: str, component: str) -> dict:
    meta: dict = {
        "name": name,
        "labels": {
            "app.kubernetes.io/name": component,
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/part-of": "finetune-operator",
            "finetune.dev/finetunejob": plan.name,
        },
    }
    if plan.namespace:
        meta["namespace"] = plan.namespace
    return meta


def _token_env(plan: ServingPlan) -> list[dict]:
    if plan.token is None:
        return []
    ref = {"name": plan.token.name, "key": plan.token.key}
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}}]


def _claim_volumes(plan: ServingPlan) -> tuple[list[dict], list[dict]]:
    """(volumes, mounts): each claim the server reads (the adapter's, the base's), read-only, under /mnt/pvc."""
    uris = [plan.adapter_uri] + ([plan.base.reference] if plan.base.reference.startswith("pvc://") else [])
    claims = sorted({parse_pvc(u)[0] for u in uris})
    volumes = [
        {"name": f"claim-{i}", "persistentVolumeClaim": {"claimName": c, "readOnly": True}}
        for i, c in enumerate(claims)
    ]
    mounts = [
        {"name": f"claim-{i}", "mountPath": posixpath.join(PVC_MOUNT_ROOT, c), "readOnly": True}
        for i, c in enumerate(claims)
    ]
    return volumes, mounts


def lora_module(plan: ServingPlan, path: str) -> str:
    """vLLM's ``--lora-modules`` JSON form (it carries ``base_model_name``)."""
    return json.dumps({"name": plan.name, "path": path, "base_model_name": plan.served_base_name})


def vllm_args(plan: ServingPlan) -> list[str]:
    """``vllm serve`` arguments (the image's entrypoint is ``vllm serve``)."""
    model = mount_path(plan.base.reference) if plan.base.reference.startswith("pvc://") else plan.served_base_name
    args = [model, "--served-model-name", plan.served_base_name]
    if plan.base.revision and plan.base.on_hub:
        args += ["--revision", plan.base.revision]
    return args + [
        "--enable-lora",
        "--max-lora-rank",
        str(plan.max_lora_rank),
        "--max-loras",
        "1",
        "--lora-modules",
        lora_module(plan, mount_path(plan.adapter_uri)),
        "--port",
        str(VLLM_PORT),
    ]


def vllm_objects(plan: ServingPlan) -> list[dict]:
    """A Deployment (non-root, restricted Pod Security) and its ClusterIP Service."""
    name = f"{plan.object_name}-vllm"
    meta = _metadata(plan, name, "vllm")
    selector = {k: meta["labels"][k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    volumes, mounts = _claim_volumes(plan)
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
    container = {
        "name": "vllm",
        "image": VLLM_IMAGE,
        "args": vllm_args(plan),
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/tmp/hf"}, *_token_env(plan)],
        "ports": [{"name": "http", "containerPort": VLLM_PORT}],
        "startupProbe": {**probe, "failureThreshold": 90},
        "readinessProbe": probe,
        "resources": {"requests": {"cpu": "2", "memory": "16Gi"}, "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}, {"name": "shm", "mountPath": "/dev/shm"}],
    }
    pod = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            *volumes,
            {"name": "tmp", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": meta["labels"]}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"selector": selector, "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http"}]},
    }
    return [deployment, service]


def kserve_model_uri(base: BaseModelRef) -> str:
    """KServe's model URI: ``hf://<org>/<name>[:<revision>]`` or the claim's ``pvc://``."""
    if base.on_hub:
        return f"hf://{base.hub_id}" + (f":{base.revision}" if base.revision else "")
    return base.reference


def kserve_llm_inference_service(plan: ServingPlan) -> dict:
    """An LLMInferenceService (serving.kserve.io/v1alpha2): KServe mounts the pvc:// adapter and runs vLLM with it."""
    container: dict = {
        "name": "main",
        "resources": {"requests": {"cpu": "2", "memory": "16Gi"}, "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"}},
    }
    if plan.token:
        container["env"] = _token_env(plan)
    return {
        "apiVersion": "serving.kserve.io/v1alpha2",
        "kind": "LLMInferenceService",
        "metadata": _metadata(plan, plan.object_name, "llminferenceservice"),
        "spec": {
            "model": {
                "uri": kserve_model_uri(plan.base),
                "name": plan.served_base_name,
                "lora": {"adapters": [{"name": plan.name, "uri": plan.adapter_uri}], "maxRank": plan.max_lora_rank},
            },
            "replicas": plan.replicas,
            "router": {"scheduler": {}, "route": {}, "gateway": {}},
            "template": {"containers": [container]},
        },
    }


def kaito_objects(plan: ServingPlan) -> list[dict]:
    """A KAITO Workspace (kaito.sh/v1beta1) on the Hub base with the adapter from the claim, and its vLLM config.

    KAITO mounts the adapter's volume (the whole claim) at /mnt/adapter/<name>; the ConfigMap's
    ``lora-modules`` points vLLM at the adapter's directory inside it."""
    name = f"{plan.object_name}-kaito"
    claim, path = parse_pvc(plan.adapter_uri)
    adapter_path = posixpath.join(KAITO_ADAPTER_ROOT, plan.name, path)
    config = {"vllm": {"max-lora-rank": str(plan.max_lora_rank), "lora-modules": lora_module(plan, adapter_path)}}
    config_name = f"{name}-inference"
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(plan, config_name, "kaito"),
        "data": {"inference_config.yaml": yaml.safe_dump(config, sort_keys=False, width=1000)},
    }
    preset: dict = {"name": plan.base.hub_id}
    if plan.token:
        preset["presetOptions"] = {"modelAccessSecret": plan.token.name}
    workspace = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": _metadata(plan, name, "kaito"),
        "resource": {"labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {
            "preset": preset,
            "config": config_name,
            "adapters": [
                {
                    "source": {
                        "name": plan.name,
                        "volumeSource": {"persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
                    }
                }
            ],
        },
    }
    return [config_map, workspace]


def kserve_inference_service(plan: ServingPlan) -> dict:
    """An InferenceService (serving.kserve.io/v1beta1) on the merged classifier: the Hugging Face runtime,
    task sequence_classification, the transformers backend (vLLM has no such task)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(plan, plan.object_name, "inferenceservice"),
        "spec": {
            "predictor": {
                "minReplicas": plan.replicas,
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "args": [
                        f"--model_name={plan.object_name}",
                        "--task=sequence_classification",
                        "--backend=huggingface",
                    ],
                    "storageUri": f"{plan.adapter_uri}/merged",
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
                },
            }
        },
    }
