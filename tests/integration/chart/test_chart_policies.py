"""The chart's RBAC and ValidatingAdmissionPolicies against a real API server: each watch mode is
`helm install`ed, then real requests are sent as the operator (its ServiceAccount's TokenRequest
token), as tenants, as a trainer ServiceAccount and as a cluster admin (impersonation), and the
answers checked, messages included.

The policies are cluster-wide objects that apply to every requester, so one release at a time is
installed (a class-scoped fixture) and uninstalled before the next class starts.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from finetune_devcluster.accounts import service_account_kubeconfig
from support.chart import (
    OPT_IN_LABEL,
    Release,
    allowed,
    can_i_rows,
    create,
    ftj,
    install,
    patch_status,
    pod,
    refused,
    rolebinding,
    sa_subject,
    trainer_job,
    unique,
    wait_enforced,
    wait_policies,
)

PROTECTED = ("kube-system", "kube-public", "kube-node-lease")


def trainer_container(**fields):
    """The trainer container of support.chart.trainer_job, with ``fields`` set."""
    return {**trainer_job("x-trainer")["spec"]["template"]["spec"]["containers"][0], **fields}


# --- the default mode: namespaces opted in by label ----------------------------------------------

SELECTOR_VALUES = {
    "admissionPolicies": {
        "enabled": True,
        "images": {"allowed": ["registry.example/ml/"]},
        "priorityClasses": {"allowed": ["ml-batch"]},
        "tolerations": {"allowedKeys": ["nvidia.com/gpu"]},
    },
    "sources": {
        "hubEndpoint": "https://hub.example",
        "modelCache": {"claimName": "model-cache"},
        "caBundle": {"configMap": "kube-root-ca.crt", "key": "ca.crt"},
    },
}
SOURCES_FLAGS = ("--hub-endpoint", "https://hub.example", "--model-cache-claim", "model-cache")
DOWNLOADED = {
    "model": {"source": "hf://acme/tiny-llm", "revision": "v1", "tokenSecretRef": {"name": "hub-token"}},
    "dataset": {
        "source": "s3://bucket-1/train.jsonl",
        "credentialsSecretRef": {"name": "s3"},
        "validationSource": "https://files.example/eval.jsonl",
        "validationSha256": "ab" * 32,
    },
}


@pytest.fixture(scope="class")
def selector_release(cluster, kube_api, tmp_path_factory) -> Iterator[Release]:
    with install(
        cluster, kube_api, tmp_path_factory.mktemp("selector"), lambda _: SELECTOR_VALUES, label_team=True
    ) as release:
        wait_policies(release, opt_in=True)
        yield release


@pytest.fixture(scope="class")
def tenants(selector_release) -> dict[str, str]:
    """alice: the built-in `edit` ClusterRole in the team namespace; bob: FineTuneJobs (the chart's
    `<fullname>-edit` ClusterRole), reading the claim `data` and updating `artifacts`; no Secrets, no pods."""
    r = selector_release
    alice, bob = unique("alice"), unique("bob")
    allowed(r.as_admin("create", "rolebinding", "alice-edit", "-n", r.team, "--clusterrole=edit", f"--user={alice}"))
    allowed(
        r.as_admin(
            "create", "rolebinding", "bob-ftj", "-n", r.team, f"--clusterrole={r.fullname}-edit", f"--user={bob}"
        )
    )
    allowed(r.as_admin("create", "secret", "generic", "hub-token", "-n", r.team, "--from-literal=token=x"))
    # bob's claims: he may read `data` (the default dataset's) and update `artifacts` (the default output)
    for role, verb, claim in (("read-data", "get", "data"), ("write-artifacts", "update", "artifacts")):
        allowed(
            r.as_admin(
                "create", "role", role, "-n", r.team, f"--verb={verb}",
                "--resource=persistentvolumeclaims", f"--resource-name={claim}",
            )
        )  # fmt: skip
        allowed(r.as_admin("create", "rolebinding", f"bob-{role}", "-n", r.team, f"--role={role}", f"--user={bob}"))
    deadline = time.monotonic() + 30  # the aggregation controller fills `edit` shortly after install
    while r.as_user(alice, "auth", "can-i", "create", "finetunejobs.finetune.dev", "-n", r.team).returncode != 0:
        assert time.monotonic() < deadline, "edit never aggregated the FineTuneJob rules"
        time.sleep(0.3)
    return {"alice": alice, "bob": bob}


@pytest.mark.adversarial
class TestSelectorMode:
    """Defaults (namespaces opted in by the label finetune.dev/enabled=true) with allowlists set."""

    # --- the operator ----------------------------------------------------------------------------

    def test_operator_creates_a_trainer_job_in_an_opted_in_namespace(self, selector_release):
        r = selector_release
        allowed(create(r.as_operator, r.team, trainer_job(unique("ok") + "-trainer")))
        # The cleanup Job runs as its run's trainer ServiceAccount (it checks the cleanup against its FineTuneJob).
        run = unique("run")
        cleanup = trainer_job(f"{run}-cleanup", serviceAccountName=f"{run}-trainer")
        cleanup["spec"]["template"]["spec"]["containers"][0]["command"] = [
            "finetune-train", "cleanup", "--output", f"/mnt/pvc/artifacts/{run}", "--run-id", "u1",
        ]  # fmt: skip
        allowed(create(r.as_operator, r.team, cleanup))

    def test_the_operators_own_children_pass(self, selector_release):
        """What operator/finetune_operator/builders.py makes for a run, created with the operator's
        token in the order the operator creates it, is what these policies let through."""
        from finetune_operator import builders, config

        r = selector_release
        name = unique("run")
        created = create(
            r.as_admin,
            r.team,
            ftj(name, output={"pvc": "artifacts", "retention": "Delete"}, resources={"gpus": 1}),
            "-o",
            "json",
        )
        allowed(created)
        resource = json.loads(created.stdout)
        cfg = config.from_args(["--all-namespaces", "--trainer-cluster-role", f"{r.fullname}-trainer"])
        spec = builders.parse_spec(resource)
        job = builders.job(resource, spec, cfg)
        for obj in builders.pod_prerequisites(resource, spec, cfg):
            allowed(create(r.as_operator, r.team, obj))
        allowed(create(r.as_operator, r.team, builders.dry_run_pod(job), "--dry-run=server"))
        allowed(create(r.as_operator, r.team, job))
        allowed(
            r.as_operator(
                "patch", "job", job["metadata"]["name"], "-n", r.team, "--type=merge", "-p", '{"spec":{"suspend":true}}'
            )
        )
        allowed(create(r.as_operator, r.team, builders.cleanup_job(resource, spec, cfg)))
        allowed(r.as_operator("delete", "job", job["metadata"]["name"], "-n", r.team))

    def test_a_run_over_several_nodes_passes_and_stays_its_own(self, selector_release):
        """The Indexed Job and the headless Service of a two-node run pass with the operator's token;
        a Service that exposes anything or names other pods, pods named under another Service, and a
        rendezvous endpoint other than the run's own node 0 do not."""
        from finetune_operator import builders, config

        r = selector_release
        name = unique("spread")
        created = create(r.as_admin, r.team, ftj(name, resources={"gpus": 1, "nodes": 2}), "-o", "json")
        allowed(created)
        resource = json.loads(created.stdout)
        cfg = config.from_args(["--all-namespaces", "--trainer-cluster-role", f"{r.fullname}-trainer"])
        spec = builders.parse_spec(resource)
        objs = builders.pod_prerequisites(resource, spec, cfg)
        service = objs[-1]
        for forged, fragment in (
            ({**service["spec"], "type": "NodePort", "clusterIP": None}, "must be headless"),
            ({**service["spec"], "externalIPs": ["203.0.113.7"]}, "must be headless"),
            ({**service["spec"], "selector": {"app": "database"}}, "selector is exactly finetune.dev/finetunejob"),
        ):
            refused(create(r.as_operator, r.team, {**service, "spec": forged}), f"Service {name}-trainer: ", fragment)
        for obj in objs:
            allowed(create(r.as_operator, r.team, obj))
        job = builders.job(resource, spec, cfg)
        assert job["spec"]["completionMode"] == "Indexed"
        elsewhere = json.loads(json.dumps(job))
        elsewhere["spec"]["template"]["spec"]["subdomain"] = "other-trainer"
        refused(create(r.as_operator, r.team, elsewhere), "spec.template.spec.subdomain must be " + f"{name}-trainer")
        endpoint = json.loads(json.dumps(job))
        (container,) = endpoint["spec"]["template"]["spec"]["containers"]
        for e in container["env"]:
            if e["name"] == "FINETUNE_RDZV_ENDPOINT":
                e["value"] = "collector.attacker.example:29400"
        refused(
            create(r.as_operator, r.team, endpoint),
            f"Job {name}-trainer: containers trainer may set FINETUNE_RDZV_ENDPOINT only to node 0",
        )
        allowed(create(r.as_operator, r.team, builders.dry_run_pod(job), "--dry-run=server"))
        allowed(create(r.as_operator, r.team, job))
        allowed(r.as_operator("delete", "job", job["metadata"]["name"], "-n", r.team))

    def test_the_operators_fetch_job_passes_and_its_endpoint_is_pinned(self, selector_release):
        """The fetch Job builders make for a run with downloaded sources passes with the operator's token
        (its commands, AWS_* from a Secret, the chart's pinned HF_ENDPOINT, FINETUNE_MODEL_CACHE and CA
        bundle, <run>-fetch running as <run>-trainer); a Hub token sent to another endpoint does not."""
        from finetune_operator import builders, config
        from finetune_operator.fetchjob import fetch_job

        r = selector_release
        name = unique("run")
        created = create(r.as_admin, r.team, ftj(name, **DOWNLOADED), "-o", "json")
        allowed(created)
        resource = json.loads(created.stdout)
        cfg = config.from_args(
            ["--all-namespaces", "--trainer-cluster-role", f"{r.fullname}-trainer", *SOURCES_FLAGS]
            + ["--ca-bundle", "kube-root-ca.crt/ca.crt"]
        )
        spec = builders.parse_spec(resource)
        for obj in builders.pod_prerequisites(resource, spec, cfg):
            allowed(create(r.as_operator, r.team, obj))
        job = fetch_job(resource, spec, cfg)
        forged = json.loads(json.dumps(job))
        model = forged["spec"]["template"]["spec"]["containers"][0]
        model["env"] = [
            {"name": "HF_ENDPOINT", "value": "https://attacker.example"} if e["name"] == "HF_ENDPOINT" else e
            for e in model["env"]
        ]
        refused(
            create(r.as_operator, r.team, forged),
            f"Job {name}-fetch: environment variables outside finetune-operator's contract: model/HF_ENDPOINT",
        )
        other = json.loads(json.dumps(job))
        other["spec"]["template"]["spec"]["serviceAccountName"] = "default"
        refused(
            create(r.as_operator, r.team, other),
            f"Job {name}-fetch: spec.template.spec.serviceAccountName must be {name}-trainer",
        )
        allowed(create(r.as_operator, r.team, job))
        allowed(create(r.as_operator, r.team, builders.job(resource, spec, cfg)))  # reads the cache read-only
        allowed(r.as_operator("delete", "job", f"{name}-fetch", "-n", r.team))

    def test_object_store_credentials_only_for_requesters_who_may_read_them(self, selector_release, tenants):
        r, bob = selector_release, tenants["bob"]
        as_bob = lambda *a, **k: r.as_user(bob, *a, **k)  # noqa: E731
        data = {"source": "s3://bucket-1/train.jsonl", "credentialsSecretRef": {"name": "s3-prod"}}
        refused(
            create(as_bob, r.team, ftj(unique("bob"), dataset=data)),
            f"spec.dataset.credentialsSecretRef: {bob} may not get Secret s3-prod in namespace {r.team}, "
            "so may not hand it to a trainer",
        )
        model = {"source": "s3://models/tiny/", "credentialsSecretRef": {"name": "s3-prod"}}
        refused(
            create(as_bob, r.team, ftj(unique("bob"), model=model)),
            f"spec.model.credentialsSecretRef: {bob} may not get Secret s3-prod",
        )
        allowed(create(lambda *a, **k: r.as_user(tenants["alice"], *a, **k), r.team, ftj(unique("a"), dataset=data)))

    @pytest.mark.parametrize("namespace", PROTECTED)
    def test_operator_never_writes_in_protected_namespaces(self, selector_release, namespace):
        r = selector_release
        refused(
            create(r.as_operator, namespace, trainer_job("x-trainer")),
            f"finetune-operator may not CREATE jobs in namespace {namespace}",
            "it never acts in kube-system, kube-public, kube-node-lease",
        )
        refused(
            create(
                r.as_operator, namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x-config"}}
            ),
            f"may not CREATE configmaps in namespace {namespace}",
        )

    def test_operator_cannot_write_in_a_namespace_not_opted_in(self, selector_release):
        r = selector_release
        msg = refused(
            create(r.as_operator, r.other, trainer_job("x-trainer")),
            f"finetune-operator may not CREATE jobs in namespace {r.other}: the namespace is not opted in",
            "labelled finetune.dev/enabled=true (watch.namespaceSelector)",
        )
        assert "ValidatingAdmissionPolicy" in msg
        refused(
            create(
                r.as_operator,
                r.other,
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x-trainer"}},
            ),
            "not opted in",
        )
        # Labelling the namespace opts it in.
        allowed(r.as_admin("label", "namespace", r.other, f"{OPT_IN_LABEL}=true"))
        try:
            deadline = time.monotonic() + 30
            while create(r.as_operator, r.other, trainer_job("y-trainer"), "--dry-run=server").returncode != 0:
                assert time.monotonic() < deadline, "labelled namespace still refused"
                time.sleep(0.3)
        finally:
            r.as_admin("label", "namespace", r.other, f"{OPT_IN_LABEL}-")

    @pytest.mark.parametrize(
        "pod_fields, fragment",
        [
            (
                {"serviceAccountName": "default"},
                "spec.template.spec.serviceAccountName must be {job} (the run's own ServiceAccount) with its "
                "token mounted, not default",
            ),
            ({"serviceAccountName": "ci-trainer"}, "not ci-trainer"),
            ({"automountServiceAccountToken": False}, "with its token mounted, not {job} without its token"),
            (
                {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
                "volumes may be configMap, emptyDir or persistentVolumeClaim only; refused: root",
            ),
            (
                {"volumes": [{"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]},
                "refused: tok",
            ),
            ({"hostNetwork": True}, "hostNetwork, hostPID and hostIPC must be false"),
            ({"hostPID": True}, "hostNetwork, hostPID and hostIPC must be false"),
            (
                {"containers": [trainer_container(securityContext={"privileged": True})]},
                "containers may not be privileged nor add capabilities (trainer)",
            ),
            (
                {
                    "initContainers": [
                        trainer_container(name="i", securityContext={"capabilities": {"add": ["SYS_ADMIN"]}})
                    ]
                },
                "may not be privileged nor add capabilities",
            ),
            ({"containers": [{**trainer_container(), "env": []}]}, "containers trainer must set FINETUNE_JOB_NAME"),
        ],
        ids=[
            "default-sa",
            "foreign-sa",
            "no-token",
            "hostpath",
            "projected-token",
            "hostnetwork",
            "hostpid",
            "privileged",
            "init-capabilities",
            "unnamed-run",
        ],
    )
    def test_operator_jobs_are_confined(self, selector_release, pod_fields, fragment):
        r = selector_release
        job = unique("bad") + "-trainer"
        refused(
            create(r.as_operator, r.team, trainer_job(job, **pod_fields)),
            f"denied request: Job {job}: ",
            fragment.format(job=job),
        )

    def test_operator_binds_only_the_trainer_role_to_the_runs_own_service_account(self, selector_release):
        r = selector_release
        trainer_role = f"{r.fullname}-trainer"
        good = unique("run") + "-trainer"
        allowed(
            create(r.as_operator, r.team, rolebinding(good, "ClusterRole", trainer_role, [sa_subject(good, r.team)]))
        )
        # The built-in powerful roles: RBAC's escalation check refuses (no bind, permissions not held).
        for role in ("admin", "cluster-admin", "edit"):
            refused(
                create(
                    r.as_operator,
                    r.team,
                    rolebinding(unique("esc"), "ClusterRole", role, [sa_subject("default", r.team)]),
                ),
                "is attempting to grant RBAC permissions not currently held",
            )
        # A role whose permissions the operator holds passes RBAC; the policy still refuses it.
        subset = unique("jobs-reader")
        allowed(r.as_admin("create", "clusterrole", subset, "--verb=get", "--resource=jobs.batch"))
        try:
            name = unique("sub") + "-trainer"
            refused(
                create(r.as_operator, r.team, rolebinding(name, "ClusterRole", subset, [sa_subject(name, r.team)])),
                f"RoleBinding {name}: roleRef must be ClusterRole {trainer_role}, not ClusterRole {subset}",
            )
        finally:
            r.as_admin("delete", "clusterrole", subset)
        # The trainer role, but for someone else.
        name = unique("run") + "-trainer"
        for subjects in (
            [sa_subject("ci-trainer", r.team)],
            [sa_subject(name, r.other)],
            [sa_subject(name, r.team), sa_subject("default", r.team)],
            [{"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}],
        ):
            refused(
                create(r.as_operator, r.team, rolebinding(name, "ClusterRole", trainer_role, subjects)),
                f"RoleBinding {name}: subjects must be exactly ServiceAccount {name} of namespace {r.team}",
            )
        # A namespaced Role within the operator's own permissions: RBAC lets it bind it, the policy not.
        allowed(
            r.as_admin(
                "create",
                "role",
                "status-patcher",
                "-n",
                r.team,
                "--verb=patch",
                "--resource=finetunejobs.finetune.dev/status",
            )
        )
        refused(
            create(r.as_operator, r.team, rolebinding(name, "Role", "status-patcher", [sa_subject(name, r.team)])),
            f"roleRef must be ClusterRole {trainer_role}, not Role status-patcher",
        )
        # And the operator cannot create Roles at all.
        refused(
            r.as_operator("create", "role", "-n", r.team, unique("r"), "--verb=get", "--resource=pods"),
            'cannot create resource "roles"',
        )

    def test_operator_creates_pods_only_as_a_dry_run(self, selector_release):
        r = selector_release
        allowed(create(r.as_operator, r.team, pod(unique("dry")), "--dry-run=server"))
        name = unique("real")
        refused(
            create(r.as_operator, r.team, pod(name)),
            f"Pod {name}: finetune-operator creates pods only as a server-side dry run (dryRun=All)",
        )
        assert r.as_admin("get", "pod", "-n", r.team, name).returncode != 0

    def test_operator_holds_no_secret_access(self, selector_release):
        r = selector_release
        allowed(r.as_admin("create", "secret", "generic", "hf-token", "-n", r.team, "--from-literal=token=x"))
        refused(r.as_operator("get", "secret", "hf-token", "-n", r.team), 'cannot get resource "secrets"')
        refused(r.as_operator("get", "secrets", "-n", "kube-system"), 'cannot list resource "secrets"')
        refused(r.as_operator("get", "secrets", "-A"), 'cannot list resource "secrets"')

    @pytest.mark.parametrize(
        "container, fragment",
        [
            (
                {"image": "busybox", "command": ["sh", "-c", "cat /secret"]},
                "image busybox is not an allowed trainer image (ghcr.io/finetune-operator/trainer, "
                "registry.example/ml/; trainer.image.repository, admissionPolicies.images.allowed)",
            ),
            (
                {"command": ["sh", "-c", "env"]},
                "containers trainer must run the trainer (finetune-train --config /etc/finetune/config.json or "
                "finetune-train cleanup --output * --run-id * or finetune-train fetch --source * --into * --kind "
                "model --revision * or finetune-train fetch --source * --into * --kind dataset --revision * "
                "--sha256 * --format * --method *; * is any one argument), with no args",
            ),
            (
                {"command": ["finetune-train"], "args": ["--config", "/tmp/x.json"]},
                "containers trainer must run the trainer (",
            ),
            (
                {"env": [{"name": "STOLEN", "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}}]},
                "environment variables outside finetune-operator's contract: trainer/STOLEN",
            ),
            (
                {"env": [{"name": "HOME", "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}}]},
                "environment variables outside finetune-operator's contract: trainer/HOME",
            ),
            (
                {"env": [{"name": "PYTHONPATH", "value": "/mnt/pvc/data"}]},
                "outside finetune-operator's contract: trainer/PYTHONPATH",
            ),
            (
                {"env": [{"name": "FINETUNE_JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
                "outside finetune-operator's contract: trainer/FINETUNE_JOB_NAME",
            ),
            (
                {"envFrom": [{"secretRef": {"name": "hub-token"}}]},
                "envFrom is refused (it would hand whole Secrets or ConfigMaps to a container)",
            ),
        ],
        ids=["image", "command", "args", "secret-env", "secret-as-home", "pythonpath", "field-path", "envfrom"],
    )
    def test_operator_token_runs_only_the_trainer_with_its_contract(self, selector_release, container, fragment):
        """With the operator's own token: a Job (and a dry-run Pod) whose container is not the trainer
        as the contract describes it is refused, so a stolen token reads no Secret value through a pod
        and runs no code of its choosing."""
        r = selector_release
        job = trainer_job(unique("steal") + "-trainer")
        trainer = job["spec"]["template"]["spec"]["containers"][0]
        trainer.update({**container, "env": trainer["env"] + container.get("env", [])})
        refused(create(r.as_operator, r.team, job), f"Job {job['metadata']['name']}: ", fragment)
        pod_body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": unique("steal")}}
        pod_body["spec"] = {k: v for k, v in job["spec"]["template"]["spec"].items() if k != "serviceAccountName"}
        refused(create(r.as_operator, r.team, pod_body, "--dry-run=server"), fragment)

    def test_operator_token_hands_a_secret_only_to_a_pod_with_its_own_identity(self, selector_release):
        r = selector_release
        name = unique("run") + "-trainer"
        hf_token = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}}]
        tokenless = trainer_job(name, automountServiceAccountToken=False)
        tokenless["spec"]["template"]["spec"]["containers"][0]["env"] += hf_token
        refused(
            create(r.as_operator, r.team, tokenless),
            f"Job {name}: spec.template.spec.serviceAccountName must be {name} (the run's own ServiceAccount) "
            f"with its token mounted, not {name} without its token",
        )
        job = trainer_job(name)
        job["spec"]["template"]["spec"]["containers"][0]["env"] += hf_token
        allowed(create(r.as_operator, r.team, job))

    def test_operator_can_i_list(self, selector_release):
        """RBAC as `kubectl auth can-i --list` reports it (admission policies are not part of it)."""
        r = selector_release
        for ns in (r.team, "kube-system"):
            out = r.as_operator("auth", "can-i", "--list", "-n", ns)
            allowed(out)
            print(f"\n$ kubectl auth can-i --list --as={r.operator_user} -n {ns}\n{out.stdout}")
            rows = can_i_rows(out.stdout)
            assert "[get list watch create patch delete]" in rows["jobs.batch"]
            assert "[list watch create]" in rows["pods"]
            assert f"[{r.fullname}-trainer]" in rows["clusterroles.rbac.authorization.k8s.io"]
            assert "[bind]" in rows["clusterroles.rbac.authorization.k8s.io"]
            assert "[get create]" in rows["rolebindings.rbac.authorization.k8s.io"]
            for absent in ("secrets", "roles.rbac.authorization.k8s.io", "*.*"):
                assert absent not in rows, f"{absent} granted:\n{out.stdout}"
            assert "escalate" not in out.stdout and "impersonate" not in out.stdout
            assert "leases.coordination.k8s.io" not in rows  # only in the release namespace
        lease = r.as_operator("auth", "can-i", "--list", "-n", r.namespace)
        assert "leases.coordination.k8s.io" in lease.stdout

    # --- tenants ---------------------------------------------------------------------------------

    def test_edit_user_can_use_finetunejobs_but_not_their_status(self, selector_release, tenants):
        r, alice = selector_release, tenants["alice"]
        name = unique("alice")
        allowed(create(lambda *a, **k: r.as_user(alice, *a, **k), r.team, ftj(name)))
        allowed(r.as_user(alice, "get", "ftj", name, "-n", r.team))
        allowed(r.as_user(alice, "delete", "ftj", name, "-n", r.team))
        assert (
            r.as_user(
                alice, "auth", "can-i", "patch", "finetunejobs.finetune.dev", "--subresource=status", "-n", r.team
            ).stdout.strip()
            == "no"
        )
        viewer = unique("carol")
        allowed(
            r.as_admin("create", "rolebinding", unique("view"), "-n", r.team, "--clusterrole=view", f"--user={viewer}")
        )
        deadline = time.monotonic() + 30
        while r.as_user(viewer, "get", "ftj", "-n", r.team).returncode != 0:
            assert time.monotonic() < deadline, "view never aggregated the FineTuneJob rules"
            time.sleep(0.3)
        refused(
            create(lambda *a, **k: r.as_user(viewer, *a, **k), r.team, ftj(unique("carol"))),
            'cannot create resource "finetunejobs"',
        )

    def test_token_secret_only_for_requesters_who_may_read_it(self, selector_release, tenants):
        r, alice, bob = selector_release, tenants["alice"], tenants["bob"]
        with_token = {"source": "hf://org/model", "tokenSecretRef": {"name": "hub-token", "key": "token"}}
        as_bob = lambda *a, **k: r.as_user(bob, *a, **k)  # noqa: E731
        refused(
            create(as_bob, r.team, ftj(unique("bob"), model=with_token)),
            f"spec.model.tokenSecretRef: {bob} may not get Secret hub-token in namespace {r.team}, "
            "so may not hand it to a trainer",
        )
        allowed(create(lambda *a, **k: r.as_user(alice, *a, **k), r.team, ftj(unique("alice"), model=with_token)))
        # Reading that one Secret is enough (RBAC by resourceName).
        allowed(
            r.as_admin(
                "create",
                "role",
                "read-hub-token",
                "-n",
                r.team,
                "--verb=get",
                "--resource=secrets",
                "--resource-name=hub-token",
            )
        )
        allowed(
            r.as_admin("create", "rolebinding", "bob-hub-token", "-n", r.team, "--role=read-hub-token", f"--user={bob}")
        )
        allowed(create(as_bob, r.team, ftj(unique("bob"), model=with_token)))
        other_secret = {**with_token, "tokenSecretRef": {"name": "ci-deploy-key"}}
        refused(create(as_bob, r.team, ftj(unique("bob"), model=other_secret)), "may not get Secret ci-deploy-key")

    @pytest.mark.parametrize(
        "image, allowed_image",
        [
            ("ghcr.io/finetune-operator/trainer:0.2.0", True),  # the chart's trainer repository, any tag
            ("ghcr.io/finetune-operator/trainer@sha256:" + "b" * 64, True),
            ("registry.example/ml/trainer:1", True),  # the allowlisted prefix
            ("registry.evil/x:1", False),
            ("ghcr.io/finetune-operator/trainer-evil:1", False),  # not a tag of the allowed repository
            ("registry.example/mlx/trainer:1", False),
        ],
    )
    def test_custom_image_only_from_the_allowlist(self, selector_release, tenants, image, allowed_image):
        """The operator's token may run only allowlisted images (below), so no requester may ask for
        another one, not even one who may create pods (alice)."""
        r = selector_release
        for who in ("alice", "bob"):
            result = create(functools.partial(r.as_user, tenants[who]), r.team, ftj(unique(who), image=image))
            if allowed_image:
                allowed(result)
            else:
                refused(
                    result,
                    f"spec.image: {image} is not among the allowed trainer images "
                    "(ghcr.io/finetune-operator/trainer, registry.example/ml/): a cluster admin adds images with "
                    "admissionPolicies.images.allowed",
                )

    def test_claims_only_for_requesters_who_may_read_and_write_them(self, selector_release, tenants):
        """bob may read the claim `data` and update `artifacts` (the tenants fixture), nothing else:
        he cannot point a trainer at another claim to read it or write into it; alice (edit) can."""
        r, alice, bob = selector_release, tenants["alice"], tenants["bob"]
        as_bob = lambda *a, **k: r.as_user(bob, *a, **k)  # noqa: E731
        backups = {"source": "pvc://db-backups/dump.jsonl", "validationSource": "pvc://db-backups/v.jsonl"}
        refused(
            create(as_bob, r.team, ftj(unique("bob"), dataset=backups)),
            f"spec.dataset.source: {bob} may not get PersistentVolumeClaim db-backups in namespace {r.team}, "
            "so may not have a trainer read it",
        )
        refused(
            create(as_bob, r.team, ftj(unique("bob"), model={"source": "pvc://models/llama"})),
            f"spec.model.source: {bob} may not get PersistentVolumeClaim models in namespace {r.team}",
        )
        # `data` he may read, but not write: not an output
        refused(
            create(as_bob, r.team, ftj(unique("bob"), output={"pvc": "data"})),
            f"spec.output.pvc: {bob} may not update PersistentVolumeClaim data in namespace {r.team}, "
            "so may not have a trainer write to it",
        )
        allowed(create(as_bob, r.team, ftj(unique("bob"))))
        as_alice = lambda *a, **k: r.as_user(alice, *a, **k)  # noqa: E731
        allowed(create(as_alice, r.team, ftj(unique("alice"), dataset=backups, output={"pvc": "data"})))

    @pytest.mark.parametrize(
        "resources, fragment",
        [
            ({"cpu": "65"}, "spec.resources.cpu: 65 is more than this cluster allows a FineTuneJob (64;"),
            ({"memory": "1Ti"}, "spec.resources.memory: 1Ti is more than this cluster allows a FineTuneJob (512Gi;"),
            ({"gpus": 9}, "spec.resources.gpus: 9 is more than this cluster allows a FineTuneJob (8;"),
            ({"cpu": "64", "memory": "512Gi", "gpus": 8}, None),
        ],
        ids=["cpu", "memory", "gpus", "at-the-maxima"],
    )
    def test_resources_within_the_admins_maxima(self, selector_release, tenants, resources, fragment):
        r = selector_release
        result = create(r.as_admin, r.team, ftj(unique("big"), resources=resources))
        if fragment is None:
            allowed(result)
        else:
            refused(result, fragment, "admissionPolicies.resources.max.")

    @pytest.mark.parametrize("who", ["bob", "admin"])
    def test_priority_class_from_the_allowlist_only(self, selector_release, tenants, who):
        r = selector_release
        run = r.as_admin if who == "admin" else (lambda *a, **k: r.as_user(tenants["bob"], *a, **k))
        refused(
            create(run, r.team, ftj(unique(who), scheduling={"priorityClassName": "system-node-critical"})),
            "spec.scheduling.priorityClassName: system-node-critical is not allowed (allowed: ml-batch; "
            "admissionPolicies.priorityClasses.allowed)",
        )
        allowed(create(run, r.team, ftj(unique(who), scheduling={"priorityClassName": "ml-batch"})))

    @pytest.mark.parametrize(
        "tolerations, fragment",
        [
            ([{"operator": "Exists"}], 'key "" (every taint) is not allowed'),
            (
                [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
                "key node-role.kubernetes.io/control-plane is not allowed",
            ),
            (
                [{"key": "nvidia.com/gpu", "operator": "Exists"}, {"key": "spot", "operator": "Exists"}],
                "key spot is not",
            ),
            ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], None),
        ],
        ids=["everything", "control-plane", "one-of-two", "gpu"],
    )
    def test_tolerations_from_the_allowlist_only(self, selector_release, tenants, tolerations, fragment):
        r = selector_release
        result = create(
            lambda *a, **k: r.as_user(tenants["bob"], *a, **k),
            r.team,
            ftj(unique("bob"), scheduling={"tolerations": tolerations}),
        )
        if fragment is None:
            allowed(result)
        else:
            refused(
                result,
                "spec.scheduling.tolerations: " + fragment,
                "(allowed keys: nvidia.com/gpu; admissionPolicies.tolerations.allowedKeys)",
            )

    # --- status integrity ------------------------------------------------------------------------

    def test_trainer_reports_progress_of_its_own_run_only(self, selector_release):
        r = selector_release
        a, b = unique("a"), unique("b")
        operator = r.api_client(r.operator_kubeconfig)
        for name in (a, b):
            allowed(create(r.as_admin, r.team, ftj(name)))
            assert (
                patch_status(
                    operator,
                    r.team,
                    name,
                    {
                        "phase": "Running",
                        "reason": "Running",
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "False",
                                "reason": "Running",
                                "lastTransitionTime": "2025-01-01T00:00:00Z",
                            }
                        ],
                    },
                )
                is None
            )
        # As the operator does for each run: the ServiceAccount and its RoleBinding to the trainer role.
        trainer = f"{a}-trainer"
        allowed(
            create(
                r.as_operator,
                r.team,
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": trainer},
                    "automountServiceAccountToken": False,
                },
            )
        )
        allowed(
            create(
                r.as_operator,
                r.team,
                rolebinding(trainer, "ClusterRole", f"{r.fullname}-trainer", [sa_subject(trainer, r.team)]),
            )
        )
        user = f"system:serviceaccount:{r.team}:{trainer}"
        as_trainer = r.api_client(
            service_account_kubeconfig(
                r.admin_api, Path(r.admin_kubeconfig), r.team, trainer, r.tmp / f"{trainer}.kubeconfig"
            )
        )

        progress = {"stage": "training", "step": 3, "totalSteps": 10, "percent": 30.0}
        assert patch_status(as_trainer, r.team, a, {"progress": progress}) is None
        status = json.loads(r.as_admin("get", "ftj", a, "-n", r.team, "-o", "json").stdout)["status"]
        assert status["progress"]["step"] == 3 and status["phase"] == "Running"

        for forged, field_name in [
            ({"phase": "Failed"}, "phase"),
            ({"progress": progress, "metrics": {"evalLoss": 0.1}}, "metrics"),
            ({"conditions": None}, "conditions"),
            ({"reason": "Forged"}, "reason"),
        ]:
            assert patch_status(as_trainer, r.team, a, forged) == (
                f'finetunejobs.finetune.dev "{a}" is forbidden: ValidatingAdmissionPolicy '
                f"'{r.fullname}-status-integrity' with binding '{r.fullname}-status-integrity' denied request: "
                f"status.{field_name} is written by finetune-operator only; "
                "a trainer may change status.progress, status.plan, status.serving only"
            )
        message = patch_status(as_trainer, r.team, b, {"progress": progress})
        assert message and message.endswith(
            f"{user} may not write the status of FineTuneJob {b}: only finetune-operator and the run's trainer "
            f"(system:serviceaccount:{r.team}:{b}-trainer) may"
        ), message
        # Cluster admins included; the operator is the one writer of everything else.
        for status_patch in ({"phase": "Succeeded"}, {"progress": progress}):
            message = patch_status(r.admin_api, r.team, a, status_patch)
            assert message and "may not write the status of FineTuneJob" in message, message
        assert patch_status(operator, r.team, a, {"phase": "Succeeded", "reason": "Succeeded"}) is None
        final = json.loads(r.as_admin("get", "ftj", a, "-n", r.team, "-o", "json").stdout)["status"]
        assert (final["phase"], final["reason"], final["progress"]["step"]) == ("Succeeded", "Succeeded", 3)

    # --- the adversarial corpus: what tenants and tokens still cannot do ----------------------

    @pytest.mark.parametrize(
        "who, args, fragment",
        [
            ("bob", ("get", "secret", "db-password"), 'cannot get resource "secrets"'),
            ("bob", ("run", "x", "--image=busybox", "--restart=Never"), 'cannot create resource "pods"'),
            ("bob", ("create", "rolebinding", "b", "--clusterrole=admin", "--user=b"), 'resource "rolebindings"'),
            ("bob", ("delete", "job", "x-trainer"), 'cannot delete resource "jobs"'),
            (
                "bob",
                ("patch", "ftj", "{run}", "--subresource=status", "--type=merge", "-p", "{{}}"),
                '"finetunejobs/status"',
            ),
            ("alice", ("create", "rolebinding", "a", "--clusterrole=admin", "--user=a"), 'resource "rolebindings"'),
        ],
        ids=[
            "bob-reads-a-secret",
            "bob-creates-a-pod",
            "bob-binds-admin",
            "bob-deletes-a-trainer-job",
            "bob-forges-a-status",
            "alice-binds-herself-admin",
        ],
    )
    def test_tenants_gain_nothing_rbac_denies_them(self, selector_release, tenants, who, args, fragment):
        """bob may use FineTuneJobs only (the chart's `<fullname>-edit`), alice has `edit`."""
        r = selector_release
        run = unique("target")
        allowed(create(r.as_admin, r.team, ftj(run, suspend=True)))
        refused(r.as_user(tenants[who], *(a.format(run=run) for a in args), "-n", r.team), fragment)

    @pytest.mark.parametrize(
        "args, fragment",
        [
            (("get", "secret", "hub-token"), 'cannot get resource "secrets"'),
            (("get", "ftj"), 'cannot list resource "finetunejobs"'),
            (("run", "y", "--image=busybox", "--restart=Never"), 'cannot create resource "pods"'),
        ],
        ids=["reads-a-secret", "lists-finetunejobs", "creates-a-pod"],
    )
    def test_a_trainers_token_serves_progress_only(self, selector_release, args, fragment):
        r = selector_release
        trainer = self.trainer_identity(r)
        refused(r.run(r.tmp / f"{trainer}.kubeconfig", *args, "-n", r.team), fragment)

    def test_a_trainers_token_dies_with_its_service_account(self, selector_release):
        r = selector_release
        trainer = self.trainer_identity(r)
        allowed(r.as_admin("delete", "serviceaccount", trainer, "-n", r.team))
        result = r.run(r.tmp / f"{trainer}.kubeconfig", "get", "pods", "-n", r.team)
        assert result.returncode != 0 and "Unauthorized" in result.stderr, result.stderr

    @staticmethod
    def trainer_identity(r: Release) -> str:
        """A run's trainer ServiceAccount as the operator makes it (bound to the trainer ClusterRole),
        with a kubeconfig of its TokenRequest token at ``r.tmp/<name>.kubeconfig``."""
        trainer = unique("run") + "-trainer"
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": trainer}}
        allowed(create(r.as_operator, r.team, account))
        binding = rolebinding(trainer, "ClusterRole", f"{r.fullname}-trainer", [sa_subject(trainer, r.team)])
        allowed(create(r.as_operator, r.team, binding))
        service_account_kubeconfig(
            r.admin_api, Path(r.admin_kubeconfig), r.team, trainer, r.tmp / f"{trainer}.kubeconfig"
        )
        return trainer

    def test_the_operators_token_cannot_impersonate(self, selector_release):
        r = selector_release
        refused(r.as_operator("get", "pods", "-n", r.team, "--as=system:admin"), 'cannot impersonate resource "users"')

    def test_the_operators_token_cannot_change_a_spec(self, selector_release):
        r = selector_release
        name = unique("target")
        allowed(create(r.as_admin, r.team, ftj(name, suspend=True)))
        operator = client.CustomObjectsApi(r.api_client(r.operator_kubeconfig))
        with pytest.raises(client.ApiException) as refusal:  # a PATCH as the operator sends it (it may not GET)
            operator.patch_namespaced_custom_object(
                "finetune.dev", "v1alpha1", r.team, "finetunejobs", name, {"spec": {"image": "registry.example/ml/x:1"}}
            )
        assert refusal.value.status == 422 and "spec.image is immutable" in refusal.value.body, refusal.value.body
        spec = json.loads(r.as_admin("get", "ftj", name, "-n", r.team, "-o", "json").stdout)["spec"]
        assert "image" not in spec


# --- watch.namespaces: a Role per listed namespace -----------------------------------------------


@pytest.fixture(scope="class")
def list_release(cluster, kube_api, tmp_path_factory) -> Iterator[Release]:
    with install(
        cluster,
        kube_api,
        tmp_path_factory.mktemp("list"),
        lambda team: {"watch": {"namespaces": [team]}},
        label_team=False,
    ) as release:
        wait_enforced(
            lambda: create(release.as_operator, release.other, trainer_job("probe-trainer"), "--dry-run=server"),
            "forbidden",
        )
        yield release


class TestListedNamespaces:
    @pytest.mark.adversarial
    def test_operator_acts_only_in_the_listed_namespace(self, list_release):
        r = list_release
        allowed(create(r.as_operator, r.team, trainer_job(unique("ok") + "-trainer")))
        for ns in (r.other, "kube-system"):
            refused(create(r.as_operator, ns, trainer_job("x-trainer")), 'cannot create resource "jobs"')
            refused(r.as_operator("get", "jobs", "-n", ns), 'cannot list resource "jobs"')
        refused(r.as_operator("get", "jobs", "-A"), "cannot list resource")
        # Where it acts: no Secrets, no Roles, and only the trainer ClusterRole to bind.
        refused(r.as_operator("get", "secrets", "-n", r.team), 'cannot list resource "secrets"')
        refused(
            r.as_operator("create", "role", "-n", r.team, unique("r"), "--verb=get", "--resource=pods"),
            'cannot create resource "roles"',
        )
        name = unique("run") + "-trainer"
        refused(
            create(r.as_operator, r.team, rolebinding(name, "ClusterRole", "edit", [sa_subject(name, r.team)])),
            "is attempting to grant RBAC permissions not currently held",
        )
        allowed(
            create(
                r.as_operator,
                r.team,
                rolebinding(name, "ClusterRole", f"{r.fullname}-trainer", [sa_subject(name, r.team)]),
            )
        )

    def test_operator_can_i_list(self, list_release):
        r = list_release
        team = r.as_operator("auth", "can-i", "--list", "-n", r.team)
        system = r.as_operator("auth", "can-i", "--list", "-n", "kube-system")
        print(
            f"\n$ kubectl auth can-i --list --as={r.operator_user} -n {r.team}\n{team.stdout}"
            f"\n$ kubectl auth can-i --list --as={r.operator_user} -n kube-system\n{system.stdout}"
        )
        rows = can_i_rows(team.stdout)
        assert "jobs.batch" in rows and "secrets" not in rows and "roles.rbac.authorization.k8s.io" not in rows
        assert f"[{r.fullname}-trainer]" in rows["clusterroles.rbac.authorization.k8s.io"]
        assert "escalate" not in team.stdout
        rows = can_i_rows(system.stdout)
        assert not {
            "jobs.batch",
            "pods",
            "configmaps",
            "serviceaccounts",
            "rolebindings.rbac.authorization.k8s.io",
            "clusterroles.rbac.authorization.k8s.io",
        } & set(rows), system.stdout

    def test_the_opt_in_policy_backs_rbac_up(self, list_release):
        """Even if the operator were granted more RBAC by hand, it may not write outside the list."""
        r = list_release
        extra = unique("extra")
        allowed(
            r.as_admin(
                "create",
                "rolebinding",
                extra,
                "-n",
                r.other,
                "--clusterrole=edit",
                f"--serviceaccount={r.namespace}:{r.fullname}",
            )
        )
        deadline = time.monotonic() + 30
        while True:
            result = create(r.as_operator, r.other, trainer_job("x-trainer"))
            if "cannot create resource" not in result.stderr:
                break
            assert time.monotonic() < deadline, result.stderr
            time.sleep(0.3)
        refused(
            result,
            f"finetune-operator may not CREATE jobs in namespace {r.other}: the namespace is not opted in",
            f"listed in watch.namespaces ({r.team})",
        )


# --- watch.clusterWide ---------------------------------------------------------------------------


@pytest.fixture(scope="class")
def wide_release(cluster, kube_api, tmp_path_factory) -> Iterator[Release]:
    with install(
        cluster, kube_api, tmp_path_factory.mktemp("wide"), lambda _: {"watch": {"clusterWide": True}}, label_team=False
    ) as release:
        wait_enforced(
            lambda: create(release.as_operator, "kube-system", trainer_job("probe-trainer"), "--dry-run=server"),
            "never acts in",
        )
        yield release


class TestClusterWide:
    def test_operator_acts_everywhere_but_protected_namespaces(self, wide_release):
        r = wide_release
        for ns in (r.team, r.other):
            allowed(create(r.as_operator, ns, trainer_job(unique("ok") + "-trainer")))
        for ns in PROTECTED:
            refused(create(r.as_operator, ns, trainer_job("x-trainer")), "it never acts in")
        # The output constraints hold in this mode too.
        refused(create(r.as_operator, r.other, trainer_job("y-trainer", hostIPC=True)), "hostIPC")
