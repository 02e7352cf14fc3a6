"""From adapter to answers, on the dev cluster's real node: a FineTuneJob's artifacts name their base
by a portable reference and carry a filled model card, its status carries the serving block, each
serving manifest it wrote is applied (server-side dry run) against the real KServe and KAITO CRDs
(tests/e2e/crds, pinned releases), and the adapter served from the claim by the trainer image, in a
pod that needs no network, answers over HTTP like the trainer's own final evaluation.

vLLM itself needs a GPU and is not run here (docs/serving.md)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from finetune_devcluster.images import Images
from support.e2e import (
    ON_DEV_NODE,
    SERVE_PORT,
    Runs,
    assert_one_line,
    classification,
    client_pod,
    serve_objects,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800), pytest.mark.usefixtures("operator_release")]

CRDS = Path(__file__).parent / "crds"
PEFT_TEMPLATE_MARKER = "[More Information Needed]"
# Where the trainer pod read its inputs: the data claim's mount, the image's packages (the built-in
# models) and its cache (the dequantized GGUF). Nothing handed off names them.
INPUT_PATHS = ("/mnt/pvc/datasets", "/opt/venv", ".cache/finetune-operator")


@pytest.fixture(scope="session")
def serving_crds(kubectl: Any, cluster: Any) -> list[str]:
    """KServe's LLMInferenceService and InferenceService and KAITO's Workspace CRDs, as released."""
    kubectl("apply", "--server-side", "-f", str(CRDS))
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted(CRDS.glob("*.yaml"))]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])
    return names


def dry_run(kubectl: Any, ns: str, text: str) -> Any:
    return kubectl("apply", "--dry-run=server", "-f", "-", input=text, namespace=ns, check=False)


def assert_applies_and_is_checked(
    kubectl: Any, ns: str, path: Path, break_it: Callable[[list[dict]], None], refusal: str
) -> list[dict]:
    """The manifest passes the API server's checks; a broken copy does not (so the CRD really checks
    what it is given). Returns the manifest's objects."""
    done = dry_run(kubectl, ns, path.read_text())
    assert done.returncode == 0, f"{path.name}: {done.stderr}"
    assert "(server dry run)" in done.stdout, done.stdout
    objects = [d for d in yaml.safe_load_all(path.read_text()) if d]
    broken = [d for d in yaml.safe_load_all(path.read_text()) if d]
    break_it(broken)
    refused = dry_run(kubectl, ns, yaml.safe_dump_all(broken))
    assert refused.returncode != 0 and refusal in refused.stderr, f"{path.name}, broken: {refused.stderr}"
    return objects


def pod_state(core: client.CoreV1Api, ns: str, name: str) -> tuple[str, bool]:
    """(phase, ready) of a pod; fails with its log once its container has exited when it should not have."""
    pod = core.read_namespaced_pod(name, ns)
    for cs in pod.status.container_statuses or []:
        if cs.restart_count or (cs.state.terminated and cs.state.terminated.exit_code):
            log = core.read_namespaced_pod_log(name, ns, previous=bool(cs.restart_count), tail_lines=30)
            raise AssertionError(f"pod {name} exited:\n{log}")
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    return pod.status.phase, ready


def serve_and_ask(
    kube_api: client.ApiClient, wait_for: Callable[..., Any], ns: str, image: str, adapter_path: str, body: dict
) -> dict[str, Any]:
    """Serve the adapter from the artifacts claim in a pod of the trainer image, wait until it answers,
    POST ``body`` from a second pod through the Service, return the answer."""
    core = client.CoreV1Api(kube_api)
    name = "served"
    pod, service = serve_objects(name, image, "artifacts", adapter_path, name)
    core.create_namespaced_pod(ns, pod)
    core.create_namespaced_service(ns, service)
    wait_for(lambda: pod_state(core, ns, name)[1], 600, f"{name} answering", namespace=ns, objects=("pods",))
    url = f"http://{name}.{ns}.svc:{SERVE_PORT}/v1/models/{name}:predict"
    core.create_namespaced_pod(ns, client_pod("ask", image, url, body))
    wait_for(lambda: pod_state(core, ns, "ask")[0] == "Succeeded", 600, "the answer", namespace=ns, objects=("pods",))
    return json.loads(core.read_namespaced_pod_log("ask", ns))


def assert_portable_artifacts(adapter: Path) -> dict[str, Any]:
    """The files a serving stack or a reader gets name none of the trainer pod's inputs by path (the
    manifests and the card name /mnt/pvc/<claim> as their own pods mount it); returns adapter_config."""
    card = (adapter / "README.md").read_text()
    assert PEFT_TEMPLATE_MARKER not in card and card.startswith("---\n")
    for path in [adapter / "adapter_config.json", adapter / "README.md", *sorted((adapter / "serving").glob("*"))]:
        text = path.read_text()
        assert not any(p in text for p in INPUT_PATHS), f"{path.name} names an input by the trainer pod's path"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert not config["base_model_name_or_path"].startswith("/")
    return config


def test_classifier_is_handed_off_and_answers_like_its_final_evaluation(
    kubectl: Any,
    kube_api: client.ApiClient,
    wait_for: Callable[..., Any],
    run_ns: dict[str, Any],
    images: Images,
    serving_crds: list[str],
) -> None:
    ns = run_ns["name"]
    runs = Runs(kube_api, ns)
    runs.create(
        classification(
            "intent",
            output={"pvc": "artifacts", "path": "intent", "merge": True},
            serving={"runtimes": ["kserve"]},
        )
    )
    st = runs.wait("intent", lambda s: s.get("phase") in ("Succeeded", "Failed"), 900, "finished")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert_one_line(st)
    serving = st["serving"]
    assert serving["adapterUri"] == "pvc://artifacts/intent" and serving["taskType"] == "SEQ_CLS"
    assert serving["baseModel"] == "hf://sentence-transformers/all-MiniLM-L6-v2"
    assert serving["baseModelRevision"] == "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
    assert serving["runtimes"] == ["kserve"] and serving["mergedUri"] == "pvc://artifacts/intent/merged"
    assert (serving["loraRank"], serving["targetModules"]) == (8, ["key", "query", "value"])
    # kubectl shows the block in the resource, not as printer columns
    assert "adapterUri: pvc://artifacts/intent" in kubectl("get", "ftj", "intent", "-o", "yaml", namespace=ns).stdout
    header = kubectl("get", "ftj", "intent", namespace=ns).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "MODEL", "METHOD", "NODES", "PROGRESS", "LOSS", "AGE"]

    adapter = run_ns["artifacts"] / "intent"
    config = assert_portable_artifacts(adapter)
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert config["revision"] == serving["baseModelRevision"]

    def no_replicas_type(objects: list[dict]) -> None:
        objects[0]["spec"]["predictor"]["minReplicas"] = "two"

    assert_applies_and_is_checked(
        kubectl, ns, adapter / "serving" / "kserve-inferenceservice.yaml", no_replicas_type, "minReplicas"
    )

    held_out = [json.loads(line) for line in (adapter / "eval_predictions.jsonl").read_text().splitlines()]
    assert len(held_out) >= 20
    body = {"instances": [r["text"] for r in held_out]}
    answer = serve_and_ask(kube_api, wait_for, ns, images.trainer, "intent", body)
    assert [p["label"] for p in answer["predictions"]] == [r["predicted"] for r in held_out]


def chat_records(n: int, seed: int) -> list[dict[str, Any]]:
    """Routing-tag tickets; each seed numbers its own tickets (no record of one seed is in another's)."""
    rng = random.Random(seed)
    out = []
    for i in range(1000 * seed, 1000 * seed + n):
        team, color = rng.choice(["alpha", "beta", "gamma", "delta"]), rng.choice(["red", "green", "blue", "amber"])
        question = f"Ticket {team[:2].upper()}-{100 + i} from team {team}, label {color}. Give the routing tag."
        answer = f'{{"queue": "{team}", "tag": "{color}"}}'
        out.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return out


def sft_smollm2(name: str) -> dict[str, Any]:
    """Two steps of LoRA SFT of the built-in SmolLM2 on the tickets (datasets:/tickets/), on the dev node's CPU."""
    spec = {
        "method": "sft",
        "model": {"source": "builtin:smollm2-135m-instruct"},
        "dataset": {
            "source": "pvc://datasets/tickets/train.jsonl",
            "validationSource": "pvc://datasets/tickets/eval.jsonl",
            "format": "chat",
        },
        "peft": {"r": 8, "alpha": 16, "targetModules": ["auto"]},
        "training": {
            "maxSteps": 2,
            "batchSize": 2,
            "gradientAccumulationSteps": 1,
            "maxSeqLength": 64,
            "optimizer": "adamw_torch",
            "gradientCheckpointing": False,
        },
        "evaluation": {"sampleGenerations": 1, "maxNewTokens": 12},
        "output": {"pvc": "artifacts", "path": name},
        "resources": {"gpus": 0, "cpu": "1", "memory": "4Gi", "shmSize": "64Mi"},
        "scheduling": {"nodeSelector": ON_DEV_NODE},
        "activeDeadlineSeconds": 1200,
    }
    return {"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name}, "spec": spec}


def assert_llm_manifests_apply(kubectl: Any, ns: str, manifests: Path) -> None:
    """The vLLM, KServe and KAITO manifests pass the API server (a broken copy of each does not), and Pod
    Security `restricted` (enforced on pods, not on Deployments) admits the vLLM pod as written."""

    def rank_zero(objects: list[dict]) -> None:
        objects[0]["spec"]["model"]["lora"]["maxRank"] = 0

    def no_preset_name(objects: list[dict]) -> None:
        del objects[1]["inference"]["preset"]["name"]

    def negative_replicas(objects: list[dict]) -> None:
        objects[0]["spec"]["replicas"] = -1

    vllm = assert_applies_and_is_checked(kubectl, ns, manifests / "vllm.yaml", negative_replicas, "spec.replicas")
    assert_applies_and_is_checked(kubectl, ns, manifests / "kserve-llminferenceservice.yaml", rank_zero, "maxRank")
    assert_applies_and_is_checked(kubectl, ns, manifests / "kaito-workspace.yaml", no_preset_name, "preset.name")
    template = vllm[0]["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vllm-pod", **template["metadata"]}}
    done = dry_run(kubectl, ns, json.dumps({**pod, "spec": template["spec"]}))
    assert done.returncode == 0 and not done.stderr, done.stderr


def test_smollm2_adapter_is_handed_off_to_vllm_kserve_and_kaito_and_generates(
    kubectl: Any,
    kube_api: client.ApiClient,
    wait_for: Callable[..., Any],
    run_ns: dict[str, Any],
    images: Images,
    serving_crds: list[str],
) -> None:
    ns = run_ns["name"]
    data = run_ns["datasets"] / "tickets"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_records(24, 0)))
    (data / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_records(4, 1)))
    runs = Runs(kube_api, ns)
    runs.create(sft_smollm2("tickets"))
    st = runs.wait("tickets", lambda s: s.get("phase") in ("Succeeded", "Failed"), 900, "finished")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    serving = st["serving"]
    assert serving["baseModel"] == "hf://HuggingFaceTB/SmolLM2-135M-Instruct" and serving["taskType"] == "CAUSAL_LM"
    assert serving["runtimes"] == ["vllm", "kserve", "kaito"] and serving["loraRank"] == 8
    assert "differ from the upstream ones" in serving["note"]

    adapter = run_ns["artifacts"] / "tickets"
    config = assert_portable_artifacts(adapter)
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and config["revision"] is None
    assert "not the upstream bf16 checkpoint" in (adapter / "README.md").read_text()
    assert_llm_manifests_apply(kubectl, ns, adapter / "serving")

    sample = json.loads((adapter / "metrics.json").read_text())["samples"][0]
    question = chat_records(4, 1)[0]["messages"][:-1]
    body = {"instances": [{"messages": question}], "parameters": {"max_tokens": 12}}
    answer = serve_and_ask(kube_api, wait_for, ns, images.trainer, "tickets", body)
    assert answer["predictions"][0]["text"] == sample["tuned"] and sample["tuned"]
