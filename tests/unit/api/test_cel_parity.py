"""The CRD's CEL rules and the operator's models give the same verdict, checked without a cluster.

Every manifest of the refused-manifest corpus (tests/support/manifests.py: BAD must be refused,
GOOD accepted) is defaulted as the API server defaults it (the schema's ``default``s, top-down),
and every ``x-kubernetes-validations`` rule of the committed CRD is evaluated with cel-python where
its field exists, ``self`` bound to that field's value, as the API server binds it. The
Kubernetes quantity library (``isQuantity``, ``quantity``, ``compareTo``) is not generic CEL: it
is implemented here on ``finetune_api.quantity`` for the quantities the schema's pattern admits
(the API server refuses any other string by the pattern first, and the rules guard on
``isQuantity``). Transition rules (``oldSelf``: immutability) run only on updates and are left to
tests/integration/operator/test_operator_crd.py.

What is compared: whatever CEL refuses, FineTuneJobSpec (``builders.parse_spec``, the operator's
own check) refuses too, and a refusal by the models' cross-field rules (a validator's error) is one
that CEL makes as well; where a rule of ``finetune_api.rules`` refuses and the models got as far as
their cross-field rules, they report that rule's message. (Where a field is refused by the schema,
pydantic does not run the object's cross-field rules, while the API server evaluates both: such a
manifest may get one more message from the server.) Refusals by the schema alone (types, patterns,
enums, bounds, required and unknown fields) are not evaluated here: for those only the models'
verdict is checked (they refuse every BAD manifest); the real API server's is checked by the
integration test.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import celpy
import pydantic
import pytest
import yaml
from celpy import celtypes

from finetune_api import rules
from finetune_api.crd import CRD_FILENAME
from finetune_api.crossfield import Rule
from finetune_api.quantity import QUANTITY_PATTERN, parse_quantity
from finetune_api.resource import FineTuneJobSpec
from finetune_operator.builders import InvalidSpec, parse_spec
from support.manifests import BAD, GOOD, bad_manifest, good_manifest
from support.operator import minimal_ftj

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = yaml.safe_load((ROOT / "crds" / CRD_FILENAME).read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
TABLES: list[tuple[Rule, ...]] = [
    rules.SPEC_RULES,
    rules.PEFT_RULES,
    rules.TRAINING_RULES,
    rules.RESOURCE_RULES,
    rules.OUTPUT_RULES,
    rules.TOLERATION_RULES,
    *rules.SOURCE_RULES.values(),
]
TABLE_MESSAGES = {rule.message for table in TABLES for rule in table}


# --- the Kubernetes quantity library ------------------------------------------------------------


class Quantity:
    def __init__(self, value: Decimal):
        self.value = value


def _is_quantity(text: celtypes.StringType) -> celtypes.BoolType:
    return celtypes.BoolType(re.fullmatch(QUANTITY_PATTERN, str(text)) is not None)


def _quantity(text: celtypes.StringType) -> Quantity:
    return Quantity(parse_quantity(str(text)))


def _compare_to(a: Quantity, b: Quantity) -> celtypes.IntType:
    return celtypes.IntType((a.value > b.value) - (a.value < b.value))


FUNCTIONS = {"isQuantity": _is_quantity, "quantity": _quantity, "compareTo": _compare_to}
ENV = celpy.Environment()


@functools.cache
def program(rule: str) -> celpy.Runner:
    return ENV.program(ENV.compile(rule), functions=FUNCTIONS)


# --- the API server's steps: defaulting, then the rules where the fields exist -----------------


def defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """Structural defaulting: absent properties get their ``default``, then each value its own."""
    if isinstance(value, dict) and "properties" in schema:
        for name, prop in schema["properties"].items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = defaulted(value[name], prop)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key in value:
            value[key] = defaulted(value[key], schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [defaulted(item, schema["items"]) for item in value]
    return value


def failed_rules(value: Any, schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, str]]]:
    """(field path, rule) of every create-time rule that ``value`` breaks."""
    out = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        verdict = program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        assert isinstance(verdict, celtypes.BoolType), f"{path}: {rule['rule']} gave {verdict!r}"
        if not verdict:
            out.append((path, rule))
    if isinstance(value, dict) and "properties" in schema:
        for name, prop in schema["properties"].items():
            if name in value and name not in ("metadata", "status"):
                out += failed_rules(value[name], prop, f"{path}.{name}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            out += failed_rules(item, schema["additionalProperties"], f"{path}[{key}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += failed_rules(item, schema["items"], f"{path}[{i}]")
    return out


def cel_verdict(body: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    obj = defaulted(copy.deepcopy(body), SCHEMA)
    names = failed_rules(
        {"metadata": obj["metadata"]}, {"x-kubernetes-validations": SCHEMA["x-kubernetes-validations"]}
    )
    return names + failed_rules(obj["spec"], SCHEMA["properties"]["spec"], "spec")


def model_verdict(body: dict[str, Any]) -> str | None:
    try:
        parse_spec({**body, "metadata": {**body["metadata"], "uid": "u", "namespace": "n"}})
    except InvalidSpec as e:
        return str(e)
    return None


def cross_field_errors(body: dict[str, Any]) -> list[str]:
    """The models' refusals that are not the schema's: errors raised by validators (value_error)."""
    try:
        FineTuneJobSpec.model_validate_json(json.dumps(body["spec"]), strict=True)
    except pydantic.ValidationError as e:
        return [err["msg"] for err in e.errors() if err["type"] == "value_error"]
    return []


CORPUS: dict[str, tuple[dict[str, Any], bool]] = {
    **{f"bad-{case}": (bad_manifest(f"bad-{case}", mutations), True) for case, mutations, _ in BAD},
    **{f"good-{case}": (good_manifest(f"good-{case}", case), False) for case in GOOD},
    "name-53": (minimal_ftj("n" * 53), True),
    "name-52": (minimal_ftj("n" * 52), False),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_cel_and_the_models_agree(case: str) -> None:
    body, refused = CORPUS[case]
    failed = cel_verdict(body)
    verdict = model_verdict(body)
    assert (verdict is not None) == refused, f"{case}: the models say {verdict!r}"
    cross_field = cross_field_errors(body)
    if failed:
        assert verdict is not None, f"{case}: CEL refuses ({failed}) but the models accept"
        shared = [rule["message"] for _, rule in failed if rule["message"] in TABLE_MESSAGES]
        if cross_field:  # the models' own rules ran (no field of the object was refused first)
            assert not shared or any(m in e for m in shared for e in cross_field), (
                f"{case}: CEL says {shared}, the models {cross_field}"
            )
    else:
        # accepted by CEL: whatever the models refuse must be the schema's job, not a cross-field rule
        assert cross_field == [], f"{case}: refused by a model rule that no CEL rule carries: {cross_field}"


def test_every_create_time_rule_refuses_some_manifest_of_the_corpus() -> None:
    """A new rule needs a corpus entry (which the API server then checks too)."""

    def rules_of(schema: Any) -> set[tuple[str, str]]:
        if not isinstance(schema, dict):
            return set()
        found = {
            (r["rule"], r["message"]) for r in schema.get("x-kubernetes-validations", []) if "oldSelf" not in r["rule"]
        }
        for prop in (schema.get("properties") or {}).values():
            found |= rules_of(prop)
        for key in ("items", "additionalProperties"):
            found |= rules_of(schema.get(key))
        return found

    every = rules_of(SCHEMA)
    exercised = {(r["rule"], r["message"]) for body, _ in CORPUS.values() for _, r in cel_verdict(body)}
    missing = sorted(message for _, message in every - exercised)
    assert not missing, f"rules no corpus manifest breaks: {missing}"
