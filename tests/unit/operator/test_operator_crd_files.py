"""The committed CRDs are exactly what the generator renders from the pydantic models."""

from pathlib import Path

import yaml

from finetune_api.crd import build_crd, crd_paths, render_crd

ROOT = Path(__file__).resolve().parents[3]


def test_committed_crds_match_generator():
    expected = render_crd()
    for path in crd_paths(ROOT):
        assert path.exists(), f"{path} missing: run `python -m finetune_api.crd --write`"
        assert path.read_text() == expected, f"{path} is stale: run `python -m finetune_api.crd --write`"


def test_crd_has_status_subresource_and_kstatus_conditions():
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


# What the operator sends, by (apiGroup, resource); docs/operator.md "RBAC" says where each is used.
# A new request in the code needs its verb here and in the rules file; the integration tests run
# the operator under exactly the rules file and fail on any request refused by RBAC.
USED_VERBS = {
    ("finetune.dev", "finetunejobs"): {"list", "watch", "patch"},
    ("finetune.dev", "finetunejobs/status"): {"patch"},
    ("finetune.dev", "finetunejobs/finalizers"): {"update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "configmaps"): {"get", "create", "patch"},
    ("", "serviceaccounts"): {"get", "create", "patch"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "create", "patch"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "create", "patch"},
    ("", "events"): {"create"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}


def test_rbac_rules_are_exactly_what_the_operator_uses():
    rules = yaml.safe_load((ROOT / "charts/finetune-operator/files/rbac-rules.yaml").read_text())
    assert isinstance(rules, list) and rules
    by = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                by.setdefault((group, res), set()).update(rule["verbs"])
    assert by == USED_VERBS
    assert not any("*" in r["verbs"] or "*" in r["resources"] or "*" in r["apiGroups"] for r in rules)


def test_trainer_role_is_within_the_operator_rules(ftj, cfg):
    """RBAC lets the operator grant only what it holds (escalation prevention)."""
    from finetune_operator import builders
    for rule in builders.role(ftj)["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                assert set(rule["verbs"]) <= USED_VERBS[(group, res)]
