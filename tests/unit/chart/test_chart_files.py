"""The Helm chart's files, read as data (no helm here; rendering is tested in
tests/integration/chart): metadata, values documentation and schema, the RBAC rule files, and the
status fields the status-integrity policy protects."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from packaging.version import Version

from finetune_api.crd import CRD_FILENAME
from finetune_api.resource import FineTuneJobStatus

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "finetune-operator"
FILES = CHART / "files"


def load_rules(name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((FILES / name).read_text())


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """{(apiGroup, resource): verbs}; a rule with resourceNames adds `verb[name,...]` entries."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        names = rule.get("resourceNames")
        verbs = {f"{v}{names}" if names else v for v in rule["verbs"]}
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(verbs)
    return out


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "finetune-operator"
    assert chart["version"] == chart["appVersion"]
    assert chart["type"] == "application"


def test_versions_agree():
    """One version everywhere: the chart (SemVer, e.g. 0.2.0-dev), the Python packages (its PEP 440
    form, 0.2.0.dev0), the operator's default trainer image tag; the CHANGELOG has a section for it."""
    from finetune_operator.config import DEFAULT_TRAINER_IMAGE
    from finetune_trainer import __version__ as trainer_version

    app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert Version(app) == Version(project) == Version(trainer_version)
    assert DEFAULT_TRAINER_IMAGE == f"ghcr.io/finetune-operator/trainer:{app}"
    assert f"## [{app}]" in (ROOT / "CHANGELOG.md").read_text()


def test_chart_crd_is_the_generated_one():
    """charts/finetune-operator/files/crds/ (rendered by templates/crds.yaml) is written by
    `python -m finetune_api.crd --write`, like crds/; the chart has no crds/ folder, which Helm
    would install once beside the template."""
    chart_copy = FILES / "crds" / CRD_FILENAME
    assert chart_copy.read_text() == (ROOT / "crds" / CRD_FILENAME).read_text(), (
        "the chart's CRD differs from crds/: run `python -m finetune_api.crd --write`"
    )
    assert sorted(p.name for p in (FILES / "crds").iterdir()) == [CRD_FILENAME]
    assert not (CHART / "crds").exists()


def test_status_policy_fields_are_the_status_model():
    """The status-integrity policy protects every status field of the chart's CRD but `progress`
    (templates/admission-policies.yaml reads the list from files/crds/ at render time); the CRD's
    status fields must be exactly FineTuneJobStatus's, so a field added to the model is protected."""
    crd = yaml.safe_load((FILES / "crds" / CRD_FILENAME).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    crd_fields = set(version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"])
    model_fields = {field.alias or name for name, field in FineTuneJobStatus.model_fields.items()}
    assert crd_fields == model_fields
    assert "progress" in crd_fields and {"phase", "conditions", "metrics", "artifacts"} <= crd_fields
    template = (CHART / "templates" / "admission-policies.yaml").read_text()
    assert '.Files.Get "files/crds/finetune.dev_finetunejobs.yaml"' in template


def test_every_value_is_documented():
    """Each key in values.yaml has a comment line right above it (list items excepted)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    item_indent = None  # content indent of the list item being read
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if item_indent is not None and indent >= item_indent:
            continue
        item_indent = None
        if line.lstrip().startswith("- "):
            item_indent = indent + 2
            continue
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        above = lines[i - 1].strip() if i else ""
        if not above.startswith("#"):
            undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, "values without a comment:\n" + "\n".join(undocumented)


def _schema_keys(schema: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(prefix + name)
        if sub.get("type") == "object" and sub.get("additionalProperties") is False:
            keys |= _schema_keys(sub, f"{prefix}{name}.")
    return keys


def _value_keys(values: dict, schema: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in values.items():
        keys.add(prefix + name)
        sub = schema.get("properties", {}).get(name, {})
        if isinstance(value, dict) and sub.get("additionalProperties") is False:
            keys |= _value_keys(value, sub, f"{prefix}{name}.")
    return keys


def test_schema_covers_exactly_the_values():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert _value_keys(values, schema) == _schema_keys(schema) - {"global"}


def test_defaults_are_not_cluster_wide():
    """The default opts namespaces in by label, with the policies that enforce it."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["watch"] == {
        "namespaces": [],
        "clusterWide": False,
        "namespaceSelector": {"matchLabels": {"finetune.dev/enabled": "true"}, "matchExpressions": []},
    }
    assert values["admissionPolicies"]["enabled"] is True
    assert values["admissionPolicies"]["tolerations"]["allowedKeys"] == ["nvidia.com/gpu"]
    assert values["admissionPolicies"]["priorityClasses"]["allowed"] == []


# The operator's verbs, agreed with operator/finetune_operator (issue 9): nothing else, no
# Secrets, no Roles, no `escalate`, `bind` only on the trainer ClusterRole.
OPERATOR_GRANTS = {
    ("finetune.dev", "finetunejobs"): {"list", "watch", "patch"},
    ("finetune.dev", "finetunejobs/status"): {"patch"},
    ("finetune.dev", "finetunejobs/finalizers"): {"update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list", "watch", "create"},
    ("", "configmaps"): {"get", "create"},
    ("", "serviceaccounts"): {"get", "create"},
    ("", "services"): {"get", "create"},  # the headless Service of a run over several nodes
    ("", "persistentvolumeclaims"): {"get"},  # the output claim's access modes
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "create"},
    ("rbac.authorization.k8s.io", "clusterroles"): {"bind['finetune-operator-trainer']"},
    ("", "events"): {"create", "list"},  # list: a stuck pod's FailedMount events
    ("", "nodes"): {"get", "list"},  # GPU memory labels: a bound pod's node, a GPU product's nodes
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}


def test_operator_rules_are_the_agreed_verbs():
    rules = load_rules("rbac-rules.yaml")
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], f"no wildcards: {rule}"
    assert grants(rules) == OPERATOR_GRANTS


def test_every_rule_says_why():
    """Each rule in the rule files is preceded by a comment."""
    for name in ("rbac-rules.yaml", "trainer-rules.yaml"):
        lines = (FILES / name).read_text().splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("- ")]
        assert starts, name
        assert all(lines[i - 1].startswith("#") for i in starts), f"{name}: a rule without a comment above it"


def test_trainer_rules_are_a_subset_of_the_operators():
    """RBAC lets the operator bind the trainer ClusterRole (besides `bind`) because it holds every
    verb in it; the trainer gets nothing but status patches."""
    trainer = grants(load_rules("trainer-rules.yaml"))
    operator = grants(load_rules("rbac-rules.yaml"))
    assert trainer == {("finetune.dev", "finetunejobs/status"): {"patch"}}
    assert all(verbs <= operator[key] for key, verbs in trainer.items())
