"""Generate the FineTuneJob CustomResourceDefinition from the pydantic models.

The OpenAPI schema is derived from ``FineTuneJobSpec`` / ``FineTuneJobStatus`` (types, enums,
ranges, defaults, descriptions); the cross-field rules are the CEL forms of ``rules.py``'s tables
(the pydantic validators check the same tables), the immutability and name rules are declared here.

    python -m finetune_api.crd            # print the CRD YAML
    python -m finetune_api.crd --write    # rewrite crds/ and the Helm chart's files/crds/
"""

import argparse
import copy
import json
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import API_VERSION, CATEGORIES, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, rules
from .base import OPERATOR_DEFAULT, ROLLBACK_SAFE_DEFAULT
from .contract import CONTRACT_PATH, render_contract
from .crossfield import cel
from .names import MAX_NAME_LENGTH, NAME_LENGTH_MESSAGE
from .resource import FineTuneJobSpec, FineTuneJobStatus

CRD_FILENAME = f"{GROUP}_{PLURAL}.yaml"

# Everything in spec but these is immutable once the FineTuneJob exists.
MUTABLE_SPEC_FIELDS = {"suspend", "ttlSecondsAfterFinished"}

NAME_RULES = [
    {
        "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        "message": NAME_LENGTH_MESSAGE,
        "reason": "FieldValueInvalid",
    },
]


def key_rule(pattern: str) -> dict[str, str]:
    """The CEL form of pydantic's ``patternProperties`` (label and annotation keys)."""
    return {
        "rule": f"self.all(k, k.matches(r'{pattern}'))",
        "message": "keys must be label/annotation keys: an optional DNS-subdomain prefix and '/', then at most "
        "63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        "reason": "FieldValueInvalid",
    }


def immutability_rule(field: str) -> dict[str, str]:
    """A transition rule that refuses adding, removing or changing ``spec.<field>``."""
    return {
        "rule": f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})",
        "message": f"spec.{field} is immutable once the FineTuneJob is created; create a new FineTuneJob instead",
        "fieldPath": f".{field}",
        "reason": "FieldValueForbidden",
    }


def int_or_string(branches: list[dict[str, Any]]) -> dict[str, Any]:
    """``int | Literal[...]`` (e.g. ``batchSize: 8`` or ``auto``): a structural schema allows only the bare
    ``x-kubernetes-int-or-string`` form, so the bounds and the allowed words become one CEL rule."""
    number = next(b for b in branches if b["type"] == "integer")
    word = next(b for b in branches if b["type"] == "string")
    words = [word["const"]] if "const" in word else list(word["enum"])
    bounds = [f"self {op} {number[k]}" for k, op in (("minimum", ">="), ("maximum", "<=")) if k in number]
    rule = f"type(self) == int ? ({' && '.join(bounds) or 'true'}) : self in {words}"
    allowed = f"an integer from {number.get('minimum')} to {number.get('maximum')}" if bounds else "an integer"
    return {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-validations": [
            {"rule": rule, "message": f"must be {allowed} or one of {words}", "reason": "FieldValueInvalid"}
        ],
    }


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn pydantic's JSON Schema into a Kubernetes structural schema."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        target.update(node)  # field-level description/default win over the type's
        node = target
    if node.pop(OPERATOR_DEFAULT, False) and "default" in node:  # see base.ROLLBACK_SAFE_DEFAULT
        node["description"] += f" Default {json.dumps(node.pop('default'))} (applied by the operator, not stored)."
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        branches = [b for b in any_of if b != {"type": "null"}]
        if sorted(b.get("type", "") for b in branches) == ["integer", "string"]:
            node.pop("title", None)
            return {**node, **int_or_string(branches)}
        if len(branches) != 1:
            raise ValueError(f"unsupported union in schema: {any_of}")
        merged = dict(branches[0])
        merged.update(node)
        node = merged
        if node.get("default", 0) is None:
            del node["default"]
        return _structural(node, defs)
    node.pop("title", None)
    pattern_props = node.pop("patternProperties", None)
    if pattern_props is not None:  # dict[QualifiedName, ...]: structural schemas know no patternProperties
        ((key_pattern, value_schema),) = pattern_props.items()
        node.pop("propertyNames", None)
        node["additionalProperties"] = value_schema
        node["x-kubernetes-validations"] = [key_rule(key_pattern)]
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, key in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[key] = node.pop(bound)
            node[bound] = True
    if node.get("type") == "object" and "properties" not in node and node.get("additionalProperties") in (True, None):
        node.pop("additionalProperties", None)
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "object" and isinstance(node.get("default"), dict) and "properties" in node:
        node["default"] = {}  # let the server cascade the nested defaults
    if node.get("default") in ({}, []) and "properties" not in node:
        del node["default"]  # empty collections: absent means empty
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    return out


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in ``X`` or ``X | None``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _factory_defaults(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """pydantic leaves ``default_factory`` defaults out of the JSON Schema. A nested object built
    by a factory (``peft: PeftSpec = Field(default_factory=PeftSpec)``) gets ``default: {}`` so
    the API server creates it and cascades its members' defaults (and CEL rules can use it)."""
    props = schema.get("properties") or {}
    for name, field in model.model_fields.items():
        prop = props.get(field.alias or name)
        if prop is None:
            continue
        nested = _nested_model(field.annotation)
        if field.json_schema_extra == ROLLBACK_SAFE_DEFAULT:
            pass  # no server-side default
        elif field.default_factory is not None and nested is not None and "properties" in prop:
            prop["default"] = {}
        elif field.default_factory is not None and "default" not in prop:
            value = field.default_factory()  # type: ignore[call-arg]
            if value and isinstance(value, (list, dict)):
                prop["default"] = copy.deepcopy(value)  # e.g. peft.targetModules
        if nested is not None:
            _factory_defaults(nested, prop)


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(raw, defs)
    _factory_defaults(model, schema)
    return schema


def spec_schema() -> dict[str, Any]:
    schema = _schema_of(FineTuneJobSpec)
    props = schema["properties"]
    props["peft"]["x-kubernetes-validations"] = cel(rules.PEFT_RULES)
    props["training"]["x-kubernetes-validations"] = cel(rules.TRAINING_RULES)
    props["resources"]["x-kubernetes-validations"] = cel(rules.RESOURCE_RULES)
    props["output"]["x-kubernetes-validations"] = cel(rules.OUTPUT_RULES)
    props["dataset"]["x-kubernetes-validations"] = cel(rules.DATASET_RULES)
    props["scheduling"]["properties"]["tolerations"]["items"]["x-kubernetes-validations"] = cel(rules.TOLERATION_RULES)
    props["serving"]["properties"]["runtimes"]["x-kubernetes-list-type"] = "set"
    for obj, source_rules in rules.SOURCE_RULES.items():
        props[obj].setdefault("x-kubernetes-validations", []).extend(cel(source_rules))
    immutable = sorted(set(props) - MUTABLE_SPEC_FIELDS)
    schema["x-kubernetes-validations"] = cel(rules.SPEC_RULES) + [immutability_rule(f) for f in immutable]
    return schema


def status_schema() -> dict[str, Any]:
    schema = _schema_of(FineTuneJobStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.source"},
    {"name": "Method", "type": "string", "jsonPath": ".spec.method"},
    # from status: spec.resources.nodes has no stored default (ROLLBACK_SAFE_DEFAULT), so most runs lack it
    {
        "name": "Nodes",
        "type": "integer",
        "jsonPath": ".status.topology.nodes",
        "description": "Nodes (pods) of the run",
    },
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress.percent",
        "description": "Percent of training steps done",
    },
    {"name": "Loss", "type": "number", "jsonPath": ".status.progress.loss"},
    {
        "name": "GPU-GiB",
        "type": "number",
        "jsonPath": ".status.plan.predictedPeakGiB",
        "description": "Predicted peak of GPU memory (GiB) from the trainer's memory plan",
        "priority": 1,
    },
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
    {"name": "Job", "type": "string", "jsonPath": ".status.jobName", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The FineTuneJob CRD as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "finetune-operator"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                f"{KIND} ({API_VERSION}) fine-tunes a base model with LoRA/QLoRA as a batch Job and "
                                "reports the outcome in its status."
                            ),
                            "required": ["spec"],
                            "x-kubernetes-validations": NAME_RULES,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `python -m finetune_api.crd --write` from operator/finetune_api. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def crd_paths(repo_root: Path) -> list[Path]:
    """The two copies of the CRD: the top-level crds/ (for `kubectl apply`) and the Helm chart's
    files/crds/ (rendered by its templates/crds.yaml, so that `helm upgrade` upgrades it)."""
    chart = repo_root / "charts" / "finetune-operator"
    return [repo_root / "crds" / CRD_FILENAME, chart / "files" / "crds" / CRD_FILENAME]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--write",
        action="store_true",
        help="write crds/, the chart's files/crds/ and the chart's files/api-contract.yaml",
    )
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="repository root")
    args = parser.parse_args()
    text = render_crd()
    if not args.write:
        print(text, end="")
        return
    for path in crd_paths(args.root):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    contract_path = args.root / CONTRACT_PATH
    contract_path.write_text(render_contract())
    print(f"wrote {contract_path}")


if __name__ == "__main__":
    main()
