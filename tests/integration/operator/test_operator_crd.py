"""The real API server accepts the generated CRD, applies its defaults and refuses bad manifests
with its own messages (schema, CEL rules, immutability, strict field validation)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from support.manifests import BAD, GOOD, bad_manifest, good_manifest
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


def spec_refusal(body: dict[str, Any]) -> str | None:
    """What the operator's own models say of a manifest (None: accepted)."""
    from finetune_operator.builders import InvalidSpec, parse_spec

    try:
        parse_spec({**body, "metadata": {**body["metadata"], "uid": "u", "namespace": "n"}})
    except InvalidSpec as e:
        return str(e)
    return None


@pytest.mark.adversarial
@pytest.mark.parametrize("case,mutations,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_manifest_is_refused(kubectl: Any, crd_ns: str, case: str, mutations: list, expected: list[str]) -> None:
    body = bad_manifest(f"bad-{case}", mutations)
    result = submit(kubectl, crd_ns, body)
    assert result.returncode != 0, f"{case}: accepted"
    for text in expected:
        assert text in result.stderr, f"{case}: {text!r} not in the server's message:\n{result.stderr}"
    # parity: the rules exist twice (CEL/OpenAPI in the CRD, pydantic in finetune_api); both refuse
    assert spec_refusal(body) is not None, f"{case}: refused by the API server but accepted by FineTuneJobSpec"


@pytest.mark.adversarial
def test_a_name_longer_than_52_characters_is_refused_by_both(kubectl: Any, crd_ns: str) -> None:
    body = minimal_ftj("n" * 53)
    result = submit(kubectl, crd_ns, body)
    assert result.returncode != 0 and "metadata.name must be at most 52 characters" in result.stderr, result.stderr
    assert "at most 52 characters" in (spec_refusal(body) or "")
    assert submit(kubectl, crd_ns, minimal_ftj("n" * 52)).returncode == 0


def generated(prefix: str) -> dict[str, Any]:
    body = minimal_ftj("")
    body["metadata"] = {"generateName": prefix}
    return body


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "body,expected",
    [
        (minimal_ftj("Upper"), ['"Upper"', "a lowercase RFC 1123 subdomain"]),
        (generated("g" * 50), ["metadata.name must be at most 52 characters"]),
        (minimal_ftj("too-large", podAnnotations={"big": "x" * 3_200_000}), ["too large"]),
    ],
    ids=["name-uppercase", "generated-name-too-long", "object-too-large"],
)
def test_names_and_sizes_the_api_server_refuses(kubectl: Any, crd_ns: str, body: dict, expected: list[str]) -> None:
    result = submit(kubectl, crd_ns, body)
    assert result.returncode != 0, "accepted"
    for text in expected:
        assert text in result.stderr, f"{text!r} not in the server's message:\n{result.stderr[:2000]}"


@pytest.mark.adversarial
@pytest.mark.parametrize("case", list(GOOD))
def test_good_manifests_are_accepted_by_both(kubectl: Any, crd_ns: str, case: str) -> None:
    body = good_manifest(f"good-{case}", case)
    result = submit(kubectl, crd_ns, body)
    assert result.returncode == 0, result.stderr
    assert spec_refusal(body) is None


@pytest.mark.adversarial
@pytest.mark.parametrize(
    "patch,expected",
    [
        ({"method": "dpo", "dataset": {"format": "preference"}}, "spec.method is immutable"),
        ({"model": {"source": "builtin:minilm-l6"}}, "spec.model is immutable"),
        ({"resources": {"gpus": 4}}, "spec.resources is immutable"),
        ({"resources": None}, "spec.resources is immutable"),
        ({"image": "other:1"}, "spec.image is immutable"),
        ({"output": {"pvc": "elsewhere"}}, "spec.output is immutable"),
        ({"output": {"path": "elsewhere"}}, "spec.output is immutable"),
        ({"training": {"learningRate": 0.001}}, "spec.training is immutable"),
    ],
    ids=["method", "model", "resources", "resources-removed", "image-added", "output", "output-path", "training"],
)
def test_spec_is_immutable(kubectl: Any, crd_ns: str, patch: dict, expected: str) -> None:
    name = f"imm-{uuid.uuid4().hex[:6]}"
    assert submit(kubectl, crd_ns, minimal_ftj(name, resources={"gpus": 2})).returncode == 0
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
    from finetune_operator import runstatus as st

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
