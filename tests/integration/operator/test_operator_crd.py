"""The real API server accepts the generated CRD, applies its defaults and refuses bad manifests
with its own messages (schema, CEL rules, immutability, strict field validation)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from support.operator import minimal_ftj

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def crd_ns(cluster: Any, kubectl: Any, crd: str) -> Any:
    name = f"crd-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def submit(kubectl: Any, ns: str, body: dict[str, Any], *args: str) -> Any:
    return kubectl("create", "--validate=strict", "-f", "-", *args, input=json.dumps(body), namespace=ns, check=False)


def test_crd_is_established_with_printer_columns(kubectl: Any, crd: str) -> None:
    out = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout)
    conds = {c["type"]: c["status"] for c in out["status"]["conditions"]}
    assert conds["Established"] == "True" and conds["NamesAccepted"] == "True"
    assert conds.get("NonStructuralSchema", "False") == "False"
    assert out["spec"]["names"]["shortNames"] == ["ftj"]


def test_schema_defaults_on_minimal_object(kubectl: Any, crd_ns: str) -> None:
    body = minimal_ftj("defaults")
    assert submit(kubectl, crd_ns, body).returncode == 0
    spec = json.loads(kubectl("get", "ftj", "defaults", "-o", "json", namespace=crd_ns).stdout)["spec"]
    assert spec["method"] == "sft"
    assert spec["peft"] == {
        "type": "lora",
        "r": 16,
        "alpha": 32,
        "dropout": 0.1,
        "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "bias": "none",
    }
    training = spec["training"]
    assert training["learningRate"] == 0.0002 and training["lrScheduler"] == "cosine"
    assert training["batchSize"] == 4 and training["gradientAccumulationSteps"] == 4
    assert training["optimizer"] == "paged_adamw_8bit" and training["maxGradNorm"] == 0.3
    assert "epochs" not in training and "maxSteps" not in training
    assert spec["dataset"]["format"] == "auto" and spec["dataset"]["validationSplit"] == 0.1
    assert spec["resources"] == {"gpus": 1, "cpu": "4", "memory": "16Gi", "shmSize": "1Gi"}
    assert spec["output"]["retention"] == "Retain" and spec["output"]["merge"] is False
    assert spec["evaluation"]["baseline"] is True
    assert spec["suspend"] is False and spec["backoffLimit"] == 0
    # kubectl get shows the printer columns
    table = kubectl("get", "ftj", "defaults", namespace=crd_ns).stdout
    assert "PHASE" in table and "MODEL" in table and "builtin:smollm2-135m-instruct" in table


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def apply(body: dict) -> None:
        node = body["spec"]
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value

    return apply


DELETE = object()

BAD: list[tuple[str, list[Callable[[dict], None]], list[str]]] = [
    ("method-enum", [_set("method", "rlhf")], ["spec.method", "Unsupported value", '"rlhf"']),
    ("rank-zero", [_set("peft.r", 0)], ["spec.peft.r", "greater than or equal to 1"]),
    ("rank-type", [_set("peft.r", "sixteen")], ["spec.peft.r", "must be of type integer"]),
    ("missing-model", [_set("model", DELETE)], ["spec.model", "Required value"]),
    ("missing-dataset", [_set("dataset", DELETE)], ["spec.dataset", "Required value"]),
    ("missing-output", [_set("output", DELETE)], ["spec.output", "Required value"]),
    ("dpo-chat", [_set("method", "dpo"), _set("dataset.format", "chat")], ["method dpo needs a preference dataset"]),
    (
        "classification-chat",
        [_set("method", "classification"), _set("dataset.format", "chat")],
        ["method classification needs text/label data"],
    ),
    ("sft-preference", [_set("dataset.format", "preference")], ["method sft cannot train on preference"]),
    ("labels-sft", [_set("dataset.labels", ["a", "b"])], ["dataset.labels is only used by method classification"]),
    (
        "epochs-and-maxsteps",
        [_set("training.epochs", 2), _set("training.maxSteps", 100)],
        ["set at most one of training.epochs and training.maxSteps"],
    ),
    ("quantization-with-lora", [_set("peft.quantization", {"bits": 4})], ["only valid with peft.type qlora"]),
    (
        "gpu-product-without-gpus",
        [_set("resources.gpus", 0), _set("resources.gpuProduct", "NVIDIA-A100-SXM4-80GB")],
        ["resources.gpuProduct needs resources.gpus >= 1"],
    ),
    ("too-many-gpus", [_set("resources.gpus", 65)], ["spec.resources.gpus", "less than or equal to 64"]),
    ("bad-memory", [_set("resources.memory", "lots")], ["spec.resources.memory", "should match"]),
    ("bad-pvc-name", [_set("output.pvc", "Bad_Claim")], ["spec.output.pvc", "should match"]),
    (
        "bad-output-path",
        [_set("output.path", "runs/../../escape")],
        ["spec.output.path", "must not contain '.' or '..'"],
    ),
    ("bad-output-path-chars", [_set("output.path", "/abs path")], ["spec.output.path", "should match"]),
    ("bad-source-scheme", [_set("model.source", "s3://bucket/model")], ["spec.model.source", "should match"]),
    ("bad-pvc-source", [_set("dataset.source", "pvc://Bad_Claim/x")], ["spec.dataset.source", "should match"]),
    ("lr-zero", [_set("training.learningRate", 0)], ["spec.training.learningRate", "greater than 0"]),
    ("dropout-one", [_set("peft.dropout", 1.0)], ["spec.peft.dropout", "less than 1"]),
    ("validation-split", [_set("dataset.validationSplit", 0.7)], ["spec.dataset.validationSplit", "less than 0.5"]),
    ("format-enum", [_set("dataset.format", "csv")], ["spec.dataset.format", "Unsupported value"]),
    (
        "toleration-operator",
        [_set("scheduling.tolerations", [{"key": "x", "operator": "Maybe"}])],
        ["spec.scheduling.tolerations[0].operator", "Unsupported value"],
    ),
    ("backoff-limit", [_set("backoffLimit", 11)], ["spec.backoffLimit", "less than or equal to 10"]),
    ("deadline-zero", [_set("activeDeadlineSeconds", 0)], ["spec.activeDeadlineSeconds", "greater than or equal to 1"]),
    ("queue-name", [_set("scheduling.queueName", "bad queue!")], ["spec.scheduling.queueName", "should match"]),
    ("gguf-file", [_set("model.ggufFile", "weights.bin")], ["spec.model.ggufFile", "should match"]),
    (
        "quantization-bits",
        [_set("peft.type", "qlora"), _set("peft.quantization", {"bits": 8})],
        ["spec.peft.quantization.bits", "Unsupported value"],
    ),
    ("suspend-type", [_set("suspend", "yes")], ["spec.suspend", "must be of type boolean"]),
    ("unknown-field", [_set("epochs", 3)], ['unknown field "spec.epochs"']),
    ("unknown-nested-field", [_set("peft.rank", 8)], ['unknown field "spec.peft.rank"']),
    # sources only in the documented forms
    ("host-path-source", [_set("dataset.source", "/etc/shadow")], ["spec.dataset.source", "under /data/ or /models/"]),
    (
        "secret-token-source",
        [_set("model.source", "/var/run/secrets/kubernetes.io/serviceaccount/token")],
        ["spec.model.source", "an absolute path must name a file baked into the trainer image"],
    ),
    (
        "dotdot-pvc-source",
        [_set("dataset.source", "pvc://data/../../etc/passwd")],
        ["spec.dataset.source", "must not contain '.' or '..' path segments"],
    ),
    (
        "dotdot-image-source",
        [_set("evaluation.generalSource", "/data/../proc/self/environ")],
        ["spec.evaluation.generalSource", "must not contain '.' or '..'"],
    ),
    # pod-level fields with the Pod API's rules: refused here rather than on the trainer Job
    (
        "node-selector-key",
        [_set("scheduling.nodeSelector", {"bad key!": "x"})],
        ["spec.scheduling.nodeSelector", "keys must be label/annotation keys"],
    ),
    (
        "node-selector-value",
        [_set("scheduling.nodeSelector", {"zone": "not a value"})],
        ["spec.scheduling.nodeSelector.zone", "should match"],
    ),
    ("pod-label-key", [_set("podLabels", {"-x": "y"})], ["spec.podLabels", "keys must be label/annotation keys"]),
    (
        "pod-annotation-key",
        [_set("podAnnotations", {"a/b/c": "y"})],
        ["spec.podAnnotations", "keys must be label/annotation keys"],
    ),
    (
        "toleration-exists-value",
        [_set("scheduling.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}])],
        ["spec.scheduling.tolerations[0].value", "must not set value"],
    ),
    (
        "toleration-no-key",
        [_set("scheduling.tolerations", [{"operator": "Equal", "value": "v"}])],
        ["spec.scheduling.tolerations[0].operator", "without key must use operator Exists"],
    ),
    (
        "toleration-seconds",
        [_set("scheduling.tolerations", [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}])],
        ["spec.scheduling.tolerations[0].tolerationSeconds", "needs effect NoExecute"],
    ),
    (
        "secret-in-other-namespace",
        [_set("model.tokenSecretRef", {"name": "other-ns/hf-token"})],
        ["spec.model.tokenSecretRef.name", "should match"],
    ),
    (
        "priority-class-name",
        [_set("scheduling.priorityClassName", "Not_Valid")],
        ["spec.scheduling.priorityClassName", "should match"],
    ),
]


def spec_refusal(body: dict[str, Any]) -> str | None:
    """What the operator's own models say of a manifest (None: accepted)."""
    from finetune_operator.builders import InvalidSpec, parse_spec

    try:
        parse_spec({**body, "metadata": {**body["metadata"], "uid": "u", "namespace": "n"}})
    except InvalidSpec as e:
        return str(e)
    return None


@pytest.mark.parametrize("case,mutations,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_manifest_is_refused(kubectl: Any, crd_ns: str, case: str, mutations: list, expected: list[str]) -> None:
    body = minimal_ftj(f"bad-{case}")
    for m in mutations:
        m(body)
    result = submit(kubectl, crd_ns, body)
    assert result.returncode != 0, f"{case}: accepted"
    for text in expected:
        assert text in result.stderr, f"{case}: {text!r} not in the server's message:\n{result.stderr}"
    # parity: the rules exist twice (CEL/OpenAPI in the CRD, pydantic in finetune_api); both refuse
    assert spec_refusal(body) is not None, f"{case}: refused by the API server but accepted by FineTuneJobSpec"


def test_a_name_longer_than_52_characters_is_refused_by_both(kubectl: Any, crd_ns: str) -> None:
    body = minimal_ftj("n" * 53)
    result = submit(kubectl, crd_ns, body)
    assert result.returncode != 0 and "metadata.name must be at most 52 characters" in result.stderr, result.stderr
    assert "at most 52 characters" in (spec_refusal(body) or "")
    assert submit(kubectl, crd_ns, minimal_ftj("n" * 52)).returncode == 0


GOOD: dict[str, dict[str, Any]] = {
    "image-data": {"dataset": {"source": "/data/train.jsonl"}, "model": {"source": "/models/llama"}},
    "tolerations": {
        "scheduling": {
            "tolerations": [
                {"key": "team", "operator": "Equal", "value": "a", "effect": "NoExecute", "tolerationSeconds": 30}
            ]
        }
    },
    "labels": {"podLabels": {"example.com/team": "a"}, "podAnnotations": {"example.com/note": "any text: ok"}},
    "secret": {"model": {"source": "hf://org/model", "tokenSecretRef": {"name": "hf-token", "key": "token"}}},
}


@pytest.mark.parametrize("case", list(GOOD))
def test_good_manifests_are_accepted_by_both(kubectl: Any, crd_ns: str, case: str) -> None:
    body = minimal_ftj(f"good-{case}", **GOOD[case])
    result = submit(kubectl, crd_ns, body)
    assert result.returncode == 0, result.stderr
    assert spec_refusal(body) is None


def test_qlora_without_quantization_is_accepted(kubectl: Any, crd_ns: str) -> None:
    body = minimal_ftj(
        "qlora-ok",
        peft={"type": "qlora"},
        method="dpo",
        dataset={"source": "pvc://data/p.jsonl", "format": "preference"},
    )
    result = submit(kubectl, crd_ns, body)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "patch,expected",
    [
        ({"method": "dpo", "dataset": {"format": "preference"}}, "spec.method is immutable"),
        ({"model": {"source": "builtin:minilm-l6"}}, "spec.model is immutable"),
        ({"resources": {"gpus": 4}}, "spec.resources is immutable"),
        ({"image": "other:1"}, "spec.image is immutable"),
        ({"output": {"pvc": "elsewhere"}}, "spec.output is immutable"),
    ],
    ids=["method", "model", "resources", "image-added", "output"],
)
def test_spec_is_immutable(kubectl: Any, crd_ns: str, patch: dict, expected: str) -> None:
    name = f"imm-{uuid.uuid4().hex[:6]}"
    assert submit(kubectl, crd_ns, minimal_ftj(name)).returncode == 0
    result = kubectl(
        "patch", "ftj", name, "--type=merge", "-p", json.dumps({"spec": patch}), namespace=crd_ns, check=False
    )
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_suspend_and_ttl_stay_mutable(kubectl: Any, crd_ns: str) -> None:
    name = "mutable"
    assert submit(kubectl, crd_ns, minimal_ftj(name)).returncode == 0
    kubectl(
        "patch",
        "ftj",
        name,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true,"ttlSecondsAfterFinished":60}}',
        namespace=crd_ns,
    )
    spec = json.loads(kubectl("get", "ftj", name, "-o", "json", namespace=crd_ns).stdout)["spec"]
    assert spec["suspend"] is True and spec["ttlSecondsAfterFinished"] == 60
    kubectl("patch", "ftj", name, "--type=merge", "-p", '{"spec":{"suspend":false}}', namespace=crd_ns)


def test_server_side_apply_strict(kubectl: Any, crd_ns: str) -> None:
    body = minimal_ftj("ssa-strict")
    body["spec"]["output"]["retain"] = True
    result = kubectl(
        "apply", "--server-side", "--validate=strict", "-f", "-", input=json.dumps(body), namespace=crd_ns, check=False
    )
    assert result.returncode != 0 and "retain" in result.stderr, result.stderr
    assert "unknown field" in result.stderr or "field not declared in schema" in result.stderr, result.stderr


def test_status_schema_accepts_operator_status(kubectl: Any, crd_ns: str) -> None:
    """What status.compute produces is valid under the CRD's status schema."""
    from finetune_operator import status as st

    name = "status-shape"
    assert submit(kubectl, crd_ns, minimal_ftj(name)).returncode == 0
    obj = json.loads(kubectl("get", "ftj", name, "-o", "json", namespace=crd_ns).stdout)
    result = st.compute(obj, None, None)
    status = dict(result.status, progress={"step": 3, "totalSteps": 10, "percent": 30, "loss": 1.2})
    kubectl(
        "patch",
        "ftj",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
        namespace=crd_ns,
    )
    got = json.loads(kubectl("get", "ftj", name, "-o", "json", namespace=crd_ns).stdout)["status"]
    assert got["phase"] == "Pending" and got["progress"]["percent"] == 30
