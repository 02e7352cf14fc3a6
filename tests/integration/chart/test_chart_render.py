"""The Helm chart rendered by helm (lint, template): the objects of each watch mode, the admission
policies, values the schema or the templates refuse, NOTES.txt. Needs the helm binary
(hack/build-k8s-binaries.sh), hence integration; the server-side checks are in the other files."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from support.chart import CHART, find, one, operator_rules, render, rules_file, run_helm

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
FULL = "ft-finetune-operator"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
CRD_FILE = CHART / "files" / "crds" / "finetune.dev_finetunejobs.yaml"
OPERATOR_USER = f"system:serviceaccount:finetune-system:{FULL}"
# The opt-in bindings leave the protected namespaces to their own policy (a clearer message).
NOT_PROTECTED = {
    "key": "kubernetes.io/metadata.name",
    "operator": "NotIn",
    "values": ["kube-system", "kube-public", "kube-node-lease"],
}
POLICIES = [
    "operator-protected-namespaces",
    "operator-opt-in",
    "operator-output",
    "operator-services",
    "finetunejob-requester",
    "status-integrity",
]

# --- helm lint -----------------------------------------------------------------------------------

LINT_CASES = {
    "defaults": {},
    "namespaced": {"watch": {"namespaces": ["team-a", "team-b"]}},
    "cluster-wide": {"watch": {"clusterWide": True}},
    "selector-expressions": {
        "watch": {
            "namespaceSelector": {
                "matchLabels": {"finetune.dev/enabled": None},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["ml", "research"]},
                    {"key": "frozen", "operator": "DoesNotExist"},
                ],
            }
        }
    },
    "ha-with-servicemonitor": {
        "replicas": 3,
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    },
    "no-metrics-no-rbac-no-policies": {
        "metrics": {"enabled": False},
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "existing"},
        "admissionPolicies": {"enabled": False},
        "watch": {"clusterWide": True},
    },
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


# --- helm template: the default install (namespaces opted in by label) ---------------------------


@pytest.fixture(scope="module")
def default_objects():
    return render()


def test_default_render_has_the_expected_objects(default_objects):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default_objects)
    assert kinds == sorted(
        [
            ("CustomResourceDefinition", "finetunejobs.finetune.dev"),
            ("ServiceAccount", FULL),
            ("ClusterRole", FULL),
            ("ClusterRoleBinding", FULL),
            ("ClusterRole", f"{FULL}-trainer"),
            ("ClusterRole", f"{FULL}-edit"),
            ("ClusterRole", f"{FULL}-view"),
            ("ClusterRole", f"{FULL}-nodes"),
            ("ClusterRoleBinding", f"{FULL}-nodes"),
            ("Role", f"{FULL}-leader-election"),
            ("RoleBinding", f"{FULL}-leader-election"),
            ("Service", f"{FULL}-metrics"),
            ("Deployment", FULL),
            *[("ValidatingAdmissionPolicy", f"{FULL}-{p}") for p in POLICIES],
            *[("ValidatingAdmissionPolicyBinding", f"{FULL}-{p}") for p in POLICIES if p != "operator-opt-in"],
            ("ValidatingAdmissionPolicyBinding", f"{FULL}-operator-opt-in-0"),
        ]
    )
    for obj in default_objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "finetune-operator"
        assert labels["app.kubernetes.io/instance"] == "ft"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == f"finetune-operator-{CHART_META['version']}"
        assert labels["app.kubernetes.io/version"] == CHART_META["appVersion"]
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding", "Service", "Deployment"):
            assert obj["metadata"]["namespace"] == "finetune-system"


def test_rbac_rules_are_exactly_the_rules_file(default_objects):
    """The file's rules, split: Lease rules only in the release namespace (never cluster-wide, which
    would let the operator take other controllers' Leases), the rest in the ClusterRole, with
    `bind` naming this release's trainer ClusterRole."""
    cluster_role = one(default_objects, "ClusterRole", FULL)["rules"]
    lease_role = one(default_objects, "Role", f"{FULL}-leader-election", "finetune-system")["rules"]
    expected = operator_rules(f"{FULL}-trainer")
    assert cluster_role == [r for r in expected if not is_lease_rule(r) and not is_node_rule(r)]
    assert lease_role == [r for r in expected if is_lease_rule(r)] and lease_role
    # nodes are cluster-scoped: their rule is its own ClusterRole, in every watch mode
    assert one(default_objects, "ClusterRole", f"{FULL}-nodes")["rules"] == [r for r in expected if is_node_rule(r)]
    assert {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": [f"{FULL}-trainer"],
    } in cluster_role
    for kind, name, ref in [
        ("ClusterRoleBinding", FULL, "ClusterRole"),
        ("RoleBinding", f"{FULL}-leader-election", "Role"),
    ]:
        binding = one(default_objects, kind, name)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": "finetune-system"}]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": ref, "name": name}


def test_trainer_and_aggregated_cluster_roles(default_objects):
    trainer = one(default_objects, "ClusterRole", f"{FULL}-trainer")
    assert trainer["rules"] == [
        {"apiGroups": ["finetune.dev"], "resources": ["finetunejobs/status"], "verbs": ["patch"]}
    ]
    edit = one(default_objects, "ClusterRole", f"{FULL}-edit")
    assert {k: v for k, v in edit["metadata"]["labels"].items() if k.startswith("rbac.")} == {
        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
    }
    writes = {v for r in edit["rules"] if "finetunejobs/status" in r["resources"] for v in r["verbs"]}
    assert writes == {"get", "list", "watch"}, "namespace editors must not write status"
    view = one(default_objects, "ClusterRole", f"{FULL}-view")
    assert {k: v for k, v in view["metadata"]["labels"].items() if k.startswith("rbac.")} == {
        "rbac.authorization.k8s.io/aggregate-to-view": "true"
    }
    assert {v for r in view["rules"] for v in r["verbs"]} == {"get", "list", "watch"}


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
    assert pod["serviceAccountName"] == FULL


def test_deployment_probes_resources_and_ports(default_objects):
    _, container = _container(default_objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["periodSeconds"] > 0 and probe["failureThreshold"] >= 1
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["image"] == f"ghcr.io/finetune-operator/operator:{CHART_META['appVersion']}"
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
    assert env["FINETUNE_OPERATOR_TRAINER_CLUSTER_ROLE"] == f"{FULL}-trainer"
    assert json.loads(env["FINETUNE_OPERATOR_GPU_TOLERATIONS"]) == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    unknown = [k for k in env if k.startswith(config.ENV_PREFIX) and k not in config.env_names()]
    assert not unknown, f"env the operator does not read: {unknown}"

    cfg = _operator_config(config, container, {"POD_NAMESPACE": "finetune-system", "HOSTNAME": "pod-0"})
    assert cfg.clusterwide and cfg.all_namespaces
    assert cfg.trainer_image == f"ghcr.io/finetune-operator/trainer:{CHART_META['appVersion']}"
    assert cfg.trainer_cluster_role == f"{FULL}-trainer"
    assert list(cfg.gpu_tolerations) == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (cfg.metrics_port, cfg.health_port) == (8080, 8081)
    assert cfg.leader_election is True
    assert (cfg.lease_name, cfg.lease_namespace) == (FULL, "finetune-system")
    assert (cfg.lease_duration_seconds, cfg.lease_renew_seconds) == (15, 5)
    assert (cfg.log_level, cfg.log_format) == ("INFO", "json")
    assert cfg.status_patch is True


def _operator_config(config, container, pod_env):
    env = {**pod_env, **_env(container)}
    import os

    clean = {k: v for k, v in os.environ.items() if k not in config.env_names()}
    return config.from_args(container["args"], environ={**clean, **env})


# --- watch modes ---------------------------------------------------------------------------------


def _opt_in_bindings(objects) -> list[dict]:
    return [
        b
        for b in find(objects, "ValidatingAdmissionPolicyBinding")
        if b["spec"]["policyName"] == f"{FULL}-operator-opt-in"
    ]


def test_default_opt_in_binding_selects_namespaces_without_the_label(default_objects):
    (binding,) = _opt_in_bindings(default_objects)
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchExpressions": [{"key": "finetune.dev/enabled", "operator": "NotIn", "values": ["true"]}, NOT_PROTECTED]
    }
    policy = one(default_objects, "ValidatingAdmissionPolicy", f"{FULL}-operator-opt-in")
    assert (
        "labelled finetune.dev/enabled=true (watch.namespaceSelector)"
        in policy["spec"]["validations"][0]["messageExpression"]
    )


def test_selector_requirements_are_negated_one_binding_each():
    """not (a and b and c) == (not a) or (not b) or (not c): one binding per requirement. (Helm merges
    maps with the defaults: null removes the default label.)"""
    objects = render(
        {
            "watch": {
                "namespaceSelector": {
                    "matchLabels": {"team": "ml", "finetune.dev/enabled": None},
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["gpu"]},
                        {"key": "env", "operator": "NotIn", "values": ["prod"]},
                        {"key": "ml", "operator": "Exists"},
                        {"key": "frozen", "operator": "DoesNotExist"},
                    ],
                }
            }
        }
    )
    selectors = [
        b["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] for b in _opt_in_bindings(objects)
    ]
    assert all(s[1] == NOT_PROTECTED for s in selectors)
    assert [s[:1] for s in selectors] == [
        [{"key": "team", "operator": "NotIn", "values": ["ml"]}],
        [{"key": "tier", "operator": "NotIn", "values": ["gpu"]}],
        [{"key": "env", "operator": "In", "values": ["prod"]}],
        [{"key": "ml", "operator": "DoesNotExist"}],
        [{"key": "frozen", "operator": "Exists"}],
    ]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"] == ["--all-namespaces"]


def test_namespaced_watch_gets_a_role_per_namespace_and_namespace_flags():
    from finetune_operator import config

    objects = render({"watch": {"namespaces": ["team-a", "team-b"]}})
    expected = operator_rules(f"{FULL}-trainer")
    for ns in ("team-a", "team-b"):
        assert one(objects, "Role", FULL, ns)["rules"] == [
            r for r in expected if not is_lease_rule(r) and not is_node_rule(r)
        ]
        binding = one(objects, "RoleBinding", FULL, ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULL}
        assert binding["subjects"][0]["namespace"] == "finetune-system"
    # Cluster-wide: the trainer and aggregated ClusterRoles (nothing binds them here) and reading nodes.
    assert sorted(o["metadata"]["name"] for o in find(objects, "ClusterRole")) == [
        f"{FULL}-edit",
        f"{FULL}-nodes",
        f"{FULL}-trainer",
        f"{FULL}-view",
    ]
    assert [o["metadata"]["name"] for o in find(objects, "ClusterRoleBinding")] == [f"{FULL}-nodes"]
    # The Lease is in the release namespace: the file's Lease rules are granted there only.
    assert one(objects, "Role", f"{FULL}-leader-election", "finetune-system")["rules"] == [
        r for r in expected if is_lease_rule(r)
    ]
    (binding,) = _opt_in_bindings(objects)
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["team-a", "team-b"]},
            NOT_PROTECTED,
        ]
    }
    _, container = _container(objects)
    assert container["args"] == ["--namespace=team-a", "--namespace=team-b"]
    cfg = _operator_config(config, container, {"POD_NAMESPACE": "finetune-system"})
    assert cfg.namespaces == ("team-a", "team-b") and not cfg.clusterwide
    assert cfg.lease_namespace == "finetune-system"


def test_cluster_wide_only_when_asked():
    objects = render({"watch": {"clusterWide": True}})
    one(objects, "ClusterRoleBinding", FULL)
    assert not _opt_in_bindings(objects) and not find(objects, "ValidatingAdmissionPolicy", f"{FULL}-operator-opt-in")
    # kube-system & co. stay refused.
    protected = one(objects, "ValidatingAdmissionPolicy", f"{FULL}-operator-protected-namespaces")
    assert protected["spec"]["validations"][0]["expression"] == (
        '!(request.namespace in ["kube-system","kube-public","kube-node-lease"])'
    )
    one(objects, "ValidatingAdmissionPolicyBinding", f"{FULL}-operator-protected-namespaces")


def test_values_flow_into_the_deployment():
    objects = render(
        {
            "replicas": 3,
            "image": {"repository": "registry.example/op", "tag": "dev", "digest": "", "pullPolicy": "Always"},
            "trainer": {
                "image": {"repository": "registry.example/trainer", "digest": "sha256:" + "a" * 64},
                "gpuTolerations": [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"}],
            },
            "metrics": {"enabled": False},
            "extraArgs": ["--log-level=DEBUG"],
            "nodeSelector": {"kubernetes.io/os": "linux"},
        }
    )
    deployment = one(objects, "Deployment")
    pod, container = _container(objects)
    env = _env(container)
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "registry.example/op:dev" and container["imagePullPolicy"] == "Always"
    assert env["FINETUNE_OPERATOR_TRAINER_IMAGE"] == "registry.example/trainer@sha256:" + "a" * 64
    assert json.loads(env["FINETUNE_OPERATOR_GPU_TOLERATIONS"]) == [
        {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"}
    ]
    assert env["FINETUNE_OPERATOR_METRICS_PORT"] == "0" and env["FINETUNE_OPERATOR_LEADER_ELECTION"] == "true"
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert not find(objects, "Service")
    assert container["args"][-1] == "--log-level=DEBUG"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    # The trainer repository is always an allowed spec.image.
    policy = one(objects, "ValidatingAdmissionPolicy", f"{FULL}-finetunejob-requester")
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert json.loads(variables["allowedImages"]) == ["registry.example/trainer"]


def test_service_monitor_is_optional():
    assert not find(render(), "ServiceMonitor")
    objects = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == one(objects, "Service")["spec"]["selector"]


def test_grafana_dashboard_is_optional_and_carries_the_shipped_json():
    assert not find(render(), "ConfigMap")
    objects = render({"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}})
    dashboard = one(objects, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "finetune-operator.json").read_text())
    assert json.loads(dashboard["data"]["finetune-operator.json"]) == shipped


# --- admission policies as rendered --------------------------------------------------------------


def test_policies_match_the_operator_by_its_service_account(default_objects):
    for name in ("operator-protected-namespaces", "operator-opt-in", "operator-output"):
        policy = one(default_objects, "ValidatingAdmissionPolicy", f"{FULL}-{name}")
        assert policy["spec"]["matchConditions"] == [
            {"name": "is-the-operator", "expression": f'request.userInfo.username == "{OPERATOR_USER}"'}
        ]
        assert policy["spec"]["failurePolicy"] == "Fail"
    status = one(default_objects, "ValidatingAdmissionPolicy", f"{FULL}-status-integrity")
    assert status["spec"]["matchConditions"][0]["expression"] == f'request.userInfo.username != "{OPERATOR_USER}"'
    for binding in find(default_objects, "ValidatingAdmissionPolicyBinding"):
        assert binding["spec"]["validationActions"] == ["Deny"]


def test_status_policy_protects_every_status_field_but_the_trainers(default_objects):
    crd = yaml.safe_load(CRD_FILE.read_text())
    fields = set(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"])
    policy = one(default_objects, "ValidatingAdmissionPolicy", f"{FULL}-status-integrity")
    messages = [v.get("message", "") for v in policy["spec"]["validations"]]
    protected = {m.split()[0].removeprefix("status.") for m in messages if m.startswith("status.")}
    assert protected == fields - {"progress", "plan", "serving"}


def test_crd_is_a_template_kept_on_uninstall(default_objects):
    """The CRD renders from files/crds/ unchanged but for its metadata: the release's labels and
    helm.sh/resource-policy: keep (crds.keep), so `helm uninstall` leaves users' FineTuneJobs."""
    generated = yaml.safe_load(CRD_FILE.read_text())
    crd = one(default_objects, "CustomResourceDefinition")
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == generated["metadata"]["name"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert generated["metadata"]["labels"].items() <= crd["metadata"]["labels"].items()
    assert not (CHART / "crds").exists(), "a crds/ folder would be installed once, beside the template"


def test_crd_values_turn_off_keep_or_the_crd():
    """crds.keep=false: no keep annotation (uninstall deletes the CRD); crds.enabled=false: no CRD."""
    unkept = one(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]
    assert find(render({"crds": {"enabled": False}}), "CustomResourceDefinition") == []


def test_allowlists_flow_into_the_requester_policy():
    objects = render(
        {
            "admissionPolicies": {
                "enabled": True,
                "images": {"allowed": ["registry.example/ml/"]},
                "priorityClasses": {"allowed": ["ml-batch"]},
                "tolerations": {"allowedKeys": ["nvidia.com/gpu", "pool"]},
            }
        }
    )
    policy = one(objects, "ValidatingAdmissionPolicy", f"{FULL}-finetunejob-requester")
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert json.loads(variables["allowedImages"]) == ["ghcr.io/finetune-operator/trainer", "registry.example/ml/"]
    assert '["nvidia.com/gpu","pool"]' in variables["refusedTolerationKeys"]
    assert any('["ml-batch"]' in v["expression"] for v in policy["spec"]["validations"])


def test_policies_can_be_turned_off():
    objects = render({"admissionPolicies": {"enabled": False}, "watch": {"namespaces": ["team-a"]}})
    assert not find(objects, "ValidatingAdmissionPolicy") and not find(objects, "ValidatingAdmissionPolicyBinding")


# --- values refused ------------------------------------------------------------------------------


def _template_error(*args: str) -> str:
    result = run_helm("template", "ft", str(CHART), *args, check=False)
    assert result.returncode != 0, f"helm template {' '.join(args)} should have failed:\n{result.stdout[:2000]}"
    return result.stderr


def test_schema_rejects_a_non_integer_replicas():
    err = _template_error("--set", "replicas=abc")
    assert "values don't meet the specifications of the schema" in err
    assert "replicas" in err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "replica=2"], "replica"),  # a typo: additionalProperties false
        (["--set", "watch.namespaces=team-a"], "namespaces"),  # a string, not a list
        (["--set-json", 'watch={"namespaces":["Not_A_Namespace"]}'], "namespaces"),
        (
            ["--set-json", 'watch={"namespaceSelector":{"matchExpressions":[{"key":"a","operator":"Maybe"}]}}'],
            "/watch/namespaceSelector/matchExpressions/0/operator",
        ),
        (
            ["--set-json", 'watch={"namespaceSelector":{"matchLabels":{"bad key!":"x"}}}'],
            "invalid propertyName 'bad key!'",
        ),
        (["--set", "watch.clusterWide=yes"], "/watch/clusterWide"),
        (["--set-json", 'admissionPolicies={"images":{"allowed":["a\'b"]}}'], "/admissionPolicies/images/allowed/0"),
        (
            ["--set-json", 'admissionPolicies={"priorityClasses":{"allowed":["Not A Class"]}}'],
            "/admissionPolicies/priorityClasses/allowed/0",
        ),
        (
            ["--set-json", 'admissionPolicies={"tolerations":{"allowedKeys":["bad key!"]}}'],
            "/admissionPolicies/tolerations/allowedKeys/0",
        ),
        (["--set", "admissionPolicies.enabled=maybe"], "/admissionPolicies/enabled"),
        (["--set", "metrics.port=70000"], "port"),
        (["--set", "logging.format=xml"], "format"),
        (["--set", "trainer.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "crds.keep=maybe"], "/crds/keep"),
        (["--set", "crds.upgrade=true"], "upgrade"),
        (["--set-json", 'trainer={"gpuTolerations":[{"key":"gpu","operator":"Maybe"}]}'], "operator"),
    ],
)
def test_schema_rejects_wrong_values(args, fragment):
    err = _template_error(*args)
    assert "schema" in err and fragment in err, err


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
def test_protected_namespaces_fail_rendering(namespace):
    err = _template_error("--set-json", f'watch={{"namespaces":["team-a","{namespace}"]}}')
    assert f"watch.namespaces: {namespace} is never allowed" in err, err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "replicas=2", "--set", "leaderElection.enabled=false"], "needs leaderElection.enabled=true"),
        (["--set", "leaderElection.renewIntervalSeconds=20"], "renewIntervalSeconds must be below"),
        (["--set", "health.port=8080"], "must differ"),
        (["--set", "serviceAccount.create=false"], "serviceAccount.name is required"),
        (["--set", "watch.clusterWide=true", "--set-json", 'watch.namespaces=["team-a"]'], "exclusive"),
        (
            [
                "--set-json",
                'watch.namespaceSelector={"matchLabels":{"finetune.dev/enabled":null},"matchExpressions":[]}',
            ],
            "watch.namespaceSelector is empty",
        ),
        (["--set", "admissionPolicies.enabled=false"], "watch.namespaceSelector is enforced by an admission policy"),
    ],
)
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
        '{{- define "test.notes" -}}\n' + notes.read_text() + "{{- end }}\n"
    )
    notes.unlink()
    (chart / "templates" / "rendered-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include "test.notes" . | toJson }}\n'
    )
    out = run_helm("template", "ft", str(chart), "--show-only", "templates/rendered-notes.yaml", *args).stdout
    return yaml.safe_load(out)["data"]["notes"]


def test_notes_tell_what_to_do_next(tmp_path):
    notes = render_notes(tmp_path, "--namespace", "ops", "--set-json", 'watch={"namespaces":["team-a"]}')
    assert "It acts in these namespaces only: team-a." in notes
    assert "kubectl -n ops rollout status deployment/ft-finetune-operator" in notes
    assert "kubectl -n team-a apply -f examples/pvc.yaml" in notes
    assert "kubectl -n team-a apply -f examples/sft-qlora-pvc.yaml" in notes
    assert "kubectl -n team-a get ftj -w" in notes
    assert "Metrics: http://ft-finetune-operator-metrics.ops.svc:8080/metrics" in notes
    default = render_notes(tmp_path / "default")
    assert "kubectl label namespace team-a finetune.dev/enabled=true" in default
    assert "Admission policies are on" in default
    wide = render_notes(tmp_path / "wide", "--set", "watch.clusterWide=true")
    assert "every namespace but kube-system, kube-public and kube-node-lease" in wide
    assert "`helm uninstall`\nkeeps it and every FineTuneJob" in default
    unkept = render_notes(tmp_path / "unkept", "--set", "crds.keep=false")
    assert "DELETES it and every FineTuneJob" in unkept
    external = render_notes(tmp_path / "external", "--set", "crds.enabled=false")
    assert "kubectl apply --server-side -f crds/finetune.dev_finetunejobs.yaml" in external


def is_lease_rule(rule: dict) -> bool:
    return "coordination.k8s.io" in rule["apiGroups"] and "leases" in rule["resources"]


def is_node_rule(rule: dict) -> bool:
    return "nodes" in rule["resources"]


def test_rules_file_has_a_bind_rule_to_substitute():
    """The chart replaces the bind rule's resourceNames; the file must carry exactly one such rule."""
    binds = [r for r in rules_file() if "clusterroles" in r["resources"]]
    assert len(binds) == 1 and binds[0]["verbs"] == ["bind"] and len(binds[0]["resourceNames"]) == 1
