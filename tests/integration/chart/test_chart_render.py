"""The Helm chart: metadata, values documentation and schema, rendered objects (helm template)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from chart_helpers import CHART, ROOT, find, one, render, rules_file, run_helm

from finetune_api.crd import CRD_FILENAME

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}

# --- without helm -------------------------------------------------------------------------------


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "finetune-operator"
    assert (chart["version"], chart["appVersion"]) == ("0.1.0", "0.1.0")
    assert chart["type"] == "application"


def test_chart_crd_is_the_generated_one():
    """charts/finetune-operator/crds/ is written by `python -m finetune_api.crd --write`, like crds/."""
    chart_copy = CHART / "crds" / CRD_FILENAME
    assert chart_copy.read_text() == (ROOT / "crds" / CRD_FILENAME).read_text(), (
        "the chart's CRD differs from crds/: run `python -m finetune_api.crd --write`")
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [CRD_FILENAME]


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


def test_rbac_rules_file_is_a_list_of_policy_rules():
    rules = rules_file()
    assert isinstance(rules, list) and rules, "files/rbac-rules.yaml must be a non-empty YAML list of PolicyRules"
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"}, rule
        assert rule["verbs"] and "*" not in rule["verbs"], f"least privilege: no wildcard verbs ({rule})"
        assert "*" not in rule.get("resources", []) and "*" not in rule.get("apiGroups", []), rule
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert ("finetune.dev", "finetunejobs") in granted and ("finetune.dev", "finetunejobs/status") in granted
    assert ("batch", "jobs") in granted


def is_lease_rule(rule: dict) -> bool:
    return "coordination.k8s.io" in rule["apiGroups"] and "leases" in rule["resources"]


def lease_rules() -> list[dict]:
    return [r for r in rules_file() if is_lease_rule(r)]


def other_rules() -> list[dict]:
    return [r for r in rules_file() if not is_lease_rule(r)]


# --- helm lint -----------------------------------------------------------------------------------

LINT_CASES = {
    "defaults": {},
    "namespaced": {"watch": {"namespaces": ["team-a", "team-b"]}},
    "ha-with-servicemonitor": {"replicas": 3, "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "no-metrics-no-rbac": {"metrics": {"enabled": False}, "rbac": {"create": False},
                           "serviceAccount": {"create": False, "name": "existing"}},
}


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("case", list(LINT_CASES))
def test_helm_lint_is_clean(case, strict):
    values = LINT_CASES[case]
    args = ["lint", str(CHART), "--namespace", "finetune-system"]
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    if strict:
        args.append("--strict")
    result = run_helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


# --- helm template: the default (cluster-wide) install -------------------------------------------


@pytest.fixture(scope="module")
def default_objects():
    return render()


def test_default_render_has_the_expected_objects(default_objects):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default_objects)
    assert kinds == sorted([
        ("ServiceAccount", "ft-finetune-operator"),
        ("ClusterRole", "ft-finetune-operator"),
        ("ClusterRoleBinding", "ft-finetune-operator"),
        ("Role", "ft-finetune-operator-leader-election"),
        ("RoleBinding", "ft-finetune-operator-leader-election"),
        ("Service", "ft-finetune-operator-metrics"),
        ("Deployment", "ft-finetune-operator"),
    ])
    for obj in default_objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "finetune-operator"
        assert labels["app.kubernetes.io/instance"] == "ft"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "finetune-operator-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "finetune-system"


def test_rbac_rules_are_exactly_the_rules_file(default_objects):
    """The file's rules, split: Lease rules only in the release namespace (never cluster-wide, which
    would let the operator take other controllers' Leases), the rest in the ClusterRole."""
    cluster_role = one(default_objects, "ClusterRole", "ft-finetune-operator")["rules"]
    lease_role = one(default_objects, "Role", "ft-finetune-operator-leader-election", "finetune-system")["rules"]
    assert cluster_role == other_rules() and lease_role == lease_rules()
    assert sorted(map(json.dumps, cluster_role + lease_role)) == sorted(map(json.dumps, rules_file()))
    assert lease_rules(), "files/rbac-rules.yaml grants no Lease access, but leader election is on by default"
    assert not any(is_lease_rule(r) for r in cluster_role)
    for kind, name, ref in [("ClusterRoleBinding", "ft-finetune-operator", "ClusterRole"),
                            ("RoleBinding", "ft-finetune-operator-leader-election", "Role")]:
        binding = one(default_objects, kind, name)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ft-finetune-operator", "namespace": "finetune-system"}]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": ref, "name": name}


def test_no_lease_rules_without_leader_election():
    objects = render({"leaderElection": {"enabled": False}})
    assert not find(objects, "Role") and not find(objects, "RoleBinding")
    assert _env(_container(objects)[1])["FINETUNE_OPERATOR_LEADER_ELECTION"] == "false"


def _container(objects):
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_deployment_is_restricted(default_objects):
    pod, container = _container(default_objects)
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for key, value in RESTRICTED_CONTAINER.items():
        assert container["securityContext"][key] == value, key
    # The read-only root filesystem needs a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["serviceAccountName"] == "ft-finetune-operator"


def test_deployment_probes_resources_and_ports(default_objects):
    _, container = _container(default_objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["periodSeconds"] > 0 and probe["failureThreshold"] >= 1
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["image"] == "ghcr.io/finetune-operator/operator:0.1.0"
    service = one(default_objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    deployment = one(default_objects, "Deployment")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def _env(container) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_deployment_configures_the_operator(default_objects):
    """The rendered args and env, fed to the operator's own parser, give the intended config."""
    from finetune_operator import config
    _, container = _container(default_objects)
    env = _env(container)
    assert container["args"] == ["--all-namespaces"]
    assert json.loads(env["FINETUNE_OPERATOR_GPU_TOLERATIONS"]) == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    unknown = [k for k in env if k.startswith(config.ENV_PREFIX) and
               k[len(config.ENV_PREFIX):].lower().replace("_", "-") not in _parser_flags(config)]
    assert not unknown, f"env the operator does not read: {unknown}"

    cfg = _operator_config(config, container, {"POD_NAMESPACE": "finetune-system", "HOSTNAME": "pod-0"})
    assert cfg.clusterwide and cfg.all_namespaces
    assert cfg.trainer_image == "ghcr.io/finetune-operator/trainer:0.1.0"
    assert list(cfg.gpu_tolerations) == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (cfg.metrics_port, cfg.health_port) == (8080, 8081)
    assert cfg.leader_election is True
    assert (cfg.lease_name, cfg.lease_namespace) == ("ft-finetune-operator", "finetune-system")
    assert (cfg.lease_duration_seconds, cfg.lease_renew_seconds) == (15, 5)
    assert (cfg.log_level, cfg.log_format) == ("INFO", "json")
    assert cfg.status_patch is True


def _parser_flags(config) -> set[str]:
    return {opt.lstrip("-") for action in config.build_parser()._actions for opt in action.option_strings} | {"namespaces"}


def _operator_config(config, container, pod_env):
    env = {**pod_env, **_env(container)}
    import os
    from unittest import mock

    clean = {k: v for k, v in os.environ.items() if not k.startswith(config.ENV_PREFIX)}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        return config.from_args(container["args"])


# --- helm template: other values -----------------------------------------------------------------


def test_namespaced_watch_gets_a_role_per_namespace_and_namespace_flags():
    from finetune_operator import config
    objects = render({"watch": {"namespaces": ["team-a", "team-b"]}})
    for ns in ("team-a", "team-b"):
        assert one(objects, "Role", "ft-finetune-operator", ns)["rules"] == other_rules()
        binding = one(objects, "RoleBinding", "ft-finetune-operator", ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ft-finetune-operator"}
        assert binding["subjects"][0]["namespace"] == "finetune-system"
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    # The Lease is in the release namespace: the file's Lease rules are granted there only.
    assert one(objects, "Role", "ft-finetune-operator-leader-election", "finetune-system")["rules"] == lease_rules()
    one(objects, "RoleBinding", "ft-finetune-operator-leader-election", "finetune-system")
    _, container = _container(objects)
    assert container["args"] == ["--namespace=team-a", "--namespace=team-b"]
    cfg = _operator_config(config, container, {"POD_NAMESPACE": "finetune-system"})
    assert cfg.namespaces == ("team-a", "team-b") and not cfg.clusterwide
    assert cfg.lease_namespace == "finetune-system"


def test_values_flow_into_the_deployment():
    objects = render({
        "replicas": 3,
        "image": {"repository": "registry.example/op", "tag": "dev", "digest": "", "pullPolicy": "Always"},
        "trainer": {"image": {"repository": "registry.example/trainer", "digest": "sha256:" + "a" * 64},
                    "gpuTolerations": [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"}]},
        "metrics": {"enabled": False},
        "extraArgs": ["--log-level=DEBUG"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
    })
    deployment = one(objects, "Deployment")
    pod, container = _container(objects)
    env = _env(container)
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "registry.example/op:dev" and container["imagePullPolicy"] == "Always"
    assert env["FINETUNE_OPERATOR_TRAINER_IMAGE"] == "registry.example/trainer@sha256:" + "a" * 64
    assert json.loads(env["FINETUNE_OPERATOR_GPU_TOLERATIONS"]) == [
        {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"}]
    assert env["FINETUNE_OPERATOR_METRICS_PORT"] == "0" and env["FINETUNE_OPERATOR_LEADER_ELECTION"] == "true"
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert not find(objects, "Service")
    assert container["args"][-1] == "--log-level=DEBUG"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_service_monitor_is_optional():
    assert not find(render(), "ServiceMonitor")
    objects = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == one(objects, "Service")["spec"]["selector"]


# --- rejected values -----------------------------------------------------------------------------


def _template_error(*args: str) -> str:
    result = run_helm("template", "ft", str(CHART), *args, check=False)
    assert result.returncode != 0, f"helm template {' '.join(args)} should have failed:\n{result.stdout[:2000]}"
    return result.stderr


def test_schema_rejects_a_non_integer_replicas():
    err = _template_error("--set", "replicas=abc")
    assert "values don't meet the specifications of the schema" in err
    assert "replicas" in err


@pytest.mark.parametrize("args, fragment", [
    (["--set", "replica=2"], "replica"),  # a typo: additionalProperties false
    (["--set", "watch.namespaces=team-a"], "namespaces"),  # a string, not a list
    (["--set-json", 'watch={"namespaces":["Not_A_Namespace"]}'], "namespaces"),
    (["--set", "metrics.port=70000"], "port"),
    (["--set", "logging.format=xml"], "format"),
    (["--set", "trainer.pullPolicy=Sometimes"], "pullPolicy"),
    (["--set-json", 'trainer={"gpuTolerations":[{"key":"gpu","operator":"Maybe"}]}'], "operator"),
])
def test_schema_rejects_wrong_values(args, fragment):
    err = _template_error(*args)
    assert "schema" in err and fragment in err, err


@pytest.mark.parametrize("args, fragment", [
    (["--set", "replicas=2", "--set", "leaderElection.enabled=false"], "needs leaderElection.enabled=true"),
    (["--set", "leaderElection.renewIntervalSeconds=20"], "renewIntervalSeconds must be below"),
    (["--set", "health.port=8080"], "must differ"),
    (["--set", "serviceAccount.create=false"], "serviceAccount.name is required"),
])
def test_inconsistent_values_fail_with_a_message(args, fragment):
    assert fragment in _template_error(*args)


# --- NOTES.txt -----------------------------------------------------------------------------------


def render_notes(tmp_path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it, without a cluster: `helm template` skips NOTES.txt, so
    render a copy of the chart where NOTES.txt is a named template put into a ConfigMap."""
    chart = tmp_path / "finetune-operator"
    shutil.copytree(CHART, chart)
    notes = chart / "templates" / "NOTES.txt"
    (chart / "templates" / "_rendered_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes.read_text() + "{{- end }}\n")
    notes.unlink()
    (chart / "templates" / "rendered-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include "test.notes" . | toJson }}\n')
    out = run_helm("template", "ft", str(chart), "--show-only", "templates/rendered-notes.yaml", *args).stdout
    return yaml.safe_load(out)["data"]["notes"]


def test_notes_tell_what_to_do_next(tmp_path):
    notes = render_notes(tmp_path, "--namespace", "ops", "--set-json", 'watch={"namespaces":["team-a"]}')
    assert "It watches FineTuneJobs in: team-a." in notes
    assert "kubectl -n ops rollout status deployment/ft-finetune-operator" in notes
    assert "kubectl -n team-a apply -f examples/pvc.yaml" in notes
    assert "kubectl -n team-a apply -f examples/sft-qlora-pvc.yaml" in notes
    assert "kubectl -n team-a get ftj -w" in notes
    assert "Metrics: http://ft-finetune-operator-metrics.ops.svc:8080/metrics" in notes
    default = render_notes(tmp_path / "default")
    assert "every namespace" in default and "kubectl -n default get ftj -w" in default
