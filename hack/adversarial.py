#!/usr/bin/env python3
"""Adversarial checks (issue 9, "Trust on a shared cluster"), reproducible.

Starts the dev cluster (control plane + kwok nodes), `helm install`s the chart (CRD, RBAC,
ValidatingAdmissionPolicies; namespaces opted in by label), runs the operator as a local process
under the chart's ServiceAccount token with the chart's settings, and tries what a cluster admin
and tenants would try, in six categories:

  manifests  bad FineTuneJobs (types, ranges, enums, patterns, cross-field rules, sources, pod-level
             fields, names, sizes): refused at `kubectl apply` naming the field, or Failed/InvalidSpec
  updates    spec changes of running runs, suspend/resume, TTL, children deleted/patched, decoys,
             pre-created child names, delete and re-create under the same name
  kills      SIGKILL of the operator during bursts, while runs finish, with two replicas
  data       bad training data and shared output directories, through the REAL trainer
             (`.venv/bin/finetune-train --config ...`, a tiny random model built on the spot)
  tenancy    two tenants (`edit`, FineTuneJobs only) and a third namespace's tenant; Secrets,
             images, priority classes, tolerations, trainer and operator tokens
  load       100 at once, 1,000 idle, 50 with ttlSecondsAfterFinished 0

Every case checks the real outcome (the API server's answer, the FineTuneJob's status, the
objects that exist, the files on disk) and is classified good / poor message / wrong /
data lost / security hole with the observed message. The full results go to a JSON file; a
per-category table is printed.

    .venv/bin/python hack/adversarial.py [--only CATEGORY ...] [--out results.json] [--keep]

Not part of the test suite (it takes ~15 minutes on 2 cores). Simulated trainer pods (kwok)
are steered by `sim.finetune.dev/*` pod annotations (devcluster/finetune_devcluster/kwok_stages.yaml).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The test suite's helpers (tests/support), reused rather than copied: tests/ is pytest's pythonpath,
# and this script's too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import yaml
from kubernetes import client

from finetune_devcluster.accounts import service_account_kubeconfig
from finetune_devcluster.cluster import DevCluster
from finetune_devcluster.controlplane import free_port
from finetune_devcluster.pytest_plugin import make_kubectl
from support.chart import CHART, Release, patch_status, run_helm, trainer_job, wait_policies
from support.operator import OPERATOR_BIN, OperatorProcess, provision_claims, sim, summary_json
from support.trainer import build_tiny_llama, make_config, records

ROOT = Path(__file__).resolve().parents[1]

CATEGORIES = ("manifests", "updates", "kills", "data", "tenancy", "load")
GOOD, POOR, WRONG, LOST, SECURITY = "good", "poor message", "wrong", "data lost", "security hole"
ERROR = "harness error"
VERDICTS = (GOOD, POOR, WRONG, LOST, SECURITY)

RELEASE, RELEASE_NS = "ft", "finetune-system"
FULLNAME = f"{RELEASE}-finetune-operator"
OPERATOR_USER = f"system:serviceaccount:{RELEASE_NS}:{FULLNAME}"
TEAM_A, TEAM_B, CLOSED = "team-a", "team-b", "lab"  # opted in, opted in, not opted in
ALICE, BOB, CAROL = "alice", "bob", "carol"  # edit in team-a; FineTuneJobs only in team-a; edit in team-b
GROUP, VERSION, PLURAL = "finetune.dev", "v1alpha1", "finetunejobs"
CHART_VALUES = {
    "admissionPolicies": {
        "enabled": True,
        "images": {"allowed": ["registry.example/ml/"]},
        "priorityClasses": {"allowed": ["ml-batch"]},
        "tolerations": {"allowedKeys": ["nvidia.com/gpu"]},
    }
}
FINAL = ("Succeeded", "Failed")


def success(loss: float = 1.0) -> str:
    """The trainer's completion record, as a simulated pod's termination message."""
    return summary_json(outcome="succeeded", metrics={"evalLoss": loss})


# --- results ---------------------------------------------------------------------------------------


@dataclass
class Case:
    category: str
    name: str
    actor: str
    expected: str
    verdict: str
    observed: str
    repro: str = ""
    seconds: float = 0.0


@dataclass
class Results:
    cases: list[Case] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, case: Case) -> None:
        with self.lock:
            self.cases.append(case)
        mark = "  " if case.verdict == GOOD else "!!"
        print(f"{mark} [{case.category}] {case.name}: {case.verdict} - {one_line(case.observed)[:220]}", flush=True)

    def table(self) -> str:
        rows = [("category", "tried", *VERDICTS, ERROR)]
        for cat in CATEGORIES:
            mine = [c for c in self.cases if c.category == cat]
            if mine:
                counts = (str(sum(c.verdict == v for c in mine)) for v in (*VERDICTS, ERROR))
                rows.append((cat, str(len(mine)), *counts))
        rows.append(
            ("total", str(len(self.cases)), *(str(sum(c.verdict == v for c in self.cases)) for v in (*VERDICTS, ERROR)))
        )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def one_line(text: str) -> str:
    return " | ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())


def wait(predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll until predicate() is truthy; returns its value, or the last (falsy) value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# --- the environment -------------------------------------------------------------------------------


class Env:
    """The dev cluster with the chart installed, three namespaces, three tenants and the operator."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.cluster = DevCluster(workdir / "cluster", dev_node=False)
        self.operators: list[OperatorProcess] = []
        self.started = False
        self.lock = threading.Lock()
        self.restarts: list[str] = []
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    # startup ---------------------------------------------------------------------------------

    def start(self) -> None:
        t0 = time.monotonic()
        self.cluster.start()
        self.started = True
        self.kubectl_bin = str(self.cluster.control_plane.bin_dir / "kubectl")
        self.kubeconfig = str(self.cluster.kubeconfig)
        self.kubectl = make_kubectl(self.cluster)
        self.api = self.cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        print(f"cluster up in {time.monotonic() - t0:.0f}s", flush=True)
        for ns, labels in (
            (RELEASE_NS, {}),
            (TEAM_A, {"finetune.dev/enabled": "true"}),
            (TEAM_B, {"finetune.dev/enabled": "true"}),
            (CLOSED, {}),
        ):
            self.core.create_namespace({"metadata": {"name": ns, "labels": labels}})
        sets = [a for k, v in CHART_VALUES.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]
        run_helm(
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NS,
            "--kubeconfig",
            self.kubeconfig,
            *sets,
            timeout=300,
        )
        # The chart's Deployment would be a kwok pod doing nothing: the operator runs here instead.
        self.kubectl("scale", "deployment", FULLNAME, "--replicas=0", namespace=RELEASE_NS)
        self.operator_kubeconfig = service_account_kubeconfig(
            self.api, self.cluster.kubeconfig, RELEASE_NS, FULLNAME, self.workdir / "operator.kubeconfig"
        )
        self.release = Release(
            RELEASE,
            RELEASE_NS,
            TEAM_A,
            CLOSED,
            self.kubectl_bin,
            self.kubeconfig,
            self.operator_kubeconfig,
            self.api,
            self.workdir,
        )
        wait_policies(self.release, opt_in=True)
        for ns in (TEAM_A, TEAM_B, CLOSED):
            self._wait_default_sa(ns)
            provision_claims(self.kubectl, ns)
        self.kubectl("create", "rolebinding", "alice-edit", "--clusterrole=edit", f"--user={ALICE}", namespace=TEAM_A)
        self.kubectl(
            "create", "rolebinding", "bob-ftj", f"--clusterrole={FULLNAME}-edit", f"--user={BOB}", namespace=TEAM_A
        )
        self.kubectl("create", "rolebinding", "carol-edit", "--clusterrole=edit", f"--user={CAROL}", namespace=TEAM_B)
        self.kubectl("create", "secret", "generic", "hub-token", "--from-literal=token=hf_team_a", namespace=TEAM_A)
        self.kubectl(
            "create", "secret", "generic", "prod-db", "--from-literal=password=team-b-secret", namespace=TEAM_B
        )
        self.kubectl("create", "priorityclass", "ml-batch", "--value=1000")
        wait(
            lambda: (
                self.as_user(ALICE, "auth", "can-i", "create", "finetunejobs.finetune.dev", "-n", TEAM_A).returncode
                == 0
            ),
            60,
        )
        self.chart_env = self._chart_operator_env()
        self.start_operator()
        self._supervisor.start()
        print(f"environment ready in {time.monotonic() - t0:.0f}s", flush=True)

    def _wait_default_sa(self, ns: str) -> None:
        wait(
            lambda: self.core.list_namespaced_service_account(ns, field_selector="metadata.name=default").items, 30, 0.2
        )

    def _chart_operator_env(self) -> dict[str, str]:
        """The operator container's environment as the chart renders it (helm get manifest)."""
        manifest = run_helm(
            "get", "manifest", RELEASE, "--namespace", RELEASE_NS, "--kubeconfig", self.kubeconfig
        ).stdout
        deployment = next(d for d in yaml.safe_load_all(manifest) if d and d.get("kind") == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e}
        env["POD_NAMESPACE"] = RELEASE_NS
        env.pop("HOME", None)
        return env

    # the operator ----------------------------------------------------------------------------

    def start_operator(self, ready: bool = True) -> OperatorProcess:
        """The operator as the chart runs it (its args and env), under the chart's ServiceAccount token.
        It is supervised like the Deployment's pod: an exit the harness did not ask for (a leader that
        lost its Lease steps down by exiting) is recorded in ``restarts`` and a new process started."""
        os.environ.update(self.chart_env)
        with self.lock:
            index = len(self.operators)
            hp, mp = free_port(), free_port()
            argv = [
                str(OPERATOR_BIN),
                "--all-namespaces",
                "--kubeconfig",
                str(self.operator_kubeconfig),
                "--health-port",
                str(hp),
                "--metrics-port",
                str(mp),
                "--identity",
                f"adversarial-{index}",
            ]
            op = OperatorProcess(argv, self.workdir / f"operator-{index}.log", hp, mp).start()
            op.supervised = True  # type: ignore[attr-defined]
            self.operators.append(op)
        if ready:
            op.wait_ready(60)
        return op

    def kill_operator(self, op: OperatorProcess) -> None:
        """SIGKILL, on purpose (not restarted by the supervisor)."""
        op.supervised = False  # type: ignore[attr-defined]
        op.kill()

    def stop_operator(self, op: OperatorProcess) -> None:
        """SIGTERM, on purpose."""
        op.supervised = False  # type: ignore[attr-defined]
        op.stop()

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            for op in list(self.operators):
                if getattr(op, "supervised", False) and op.proc and op.proc.poll() is not None:
                    op.supervised = False  # type: ignore[attr-defined]
                    last = [
                        line
                        for line in op.logs().splitlines()
                        if '"level": "ERROR"' in line or '"level": "WARNING"' in line
                    ][-2:]
                    self.restarts.append(
                        f"{op.log.name} exited {op.proc.returncode} at {time.strftime('%H:%M:%S')}: "
                        + " / ".join(one_line(json.loads(x).get("message", x)) for x in last)
                    )
                    print(
                        f"!! operator {op.log.name} exited on its own ({op.proc.returncode}): restarting it "
                        f"({self.restarts[-1]})",
                        flush=True,
                    )
                    self.start_operator(ready=False)

    def restarts_since(self, mark: int) -> list[str]:
        return self.restarts[mark:]

    def live_operators(self) -> list[OperatorProcess]:
        return [op for op in self.operators if op.proc and op.proc.poll() is None]

    def leader(self, timeout: float = 30) -> OperatorProcess | None:
        def find() -> OperatorProcess | None:
            for op in self.live_operators():
                if "finetune_operator_leader 1.0" in op.metrics():
                    return op
            return None

        return wait(find, timeout, 0.3)

    def ensure_one_operator(self) -> OperatorProcess:
        live = self.live_operators()
        for op in live[1:]:
            self.stop_operator(op)
        if live:
            return live[0]
        return self.start_operator()

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join()
        for op in self.operators:
            with contextlib.suppress(Exception):
                self.stop_operator(op)
        if self.started:
            with contextlib.suppress(Exception):
                self.api.close()
            self.cluster.stop()

    # requests --------------------------------------------------------------------------------

    def run(
        self, *args: str, kubeconfig: str | Path | None = None, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def as_user(self, user: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl as a user: admin unless a tenant name is given (impersonation, as that user's own
        credentials would be)."""
        if user == "admin":
            return self.run(*args, input=input)
        return self.run(f"--as={user}", "--as-group=system:authenticated", *args, input=input)

    def as_operator(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(*args, kubeconfig=self.operator_kubeconfig, input=input)

    def apply(self, user: str, ns: str, obj: dict[str, Any], verb: str = "apply") -> subprocess.CompletedProcess[str]:
        return self.as_user(user, verb, "-n", ns, "-f", "-", input=json.dumps(obj))

    def ftj(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def status(self, ns: str, name: str) -> dict[str, Any]:
        return (self.ftj(ns, name) or {}).get("status") or {}

    def create_ftj(self, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, obj)

    def patch_ftj(self, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)

    def delete_ftj(self, ns: str, name: str) -> None:
        with contextlib.suppress(client.ApiException):
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def jobs(self, ns: str, name: str) -> list[Any]:
        """Jobs labelled as the run's trainer Job (whoever created them)."""
        return self.batch.list_namespaced_job(
            ns, label_selector=f"finetune.dev/finetunejob={name},app.kubernetes.io/component=trainer"
        ).items

    def pods(self, ns: str, name: str) -> list[Any]:
        return self.core.list_namespaced_pod(ns, label_selector=f"finetune.dev/finetunejob={name}").items

    def wait_phase(
        self, ns: str, name: str, phases: tuple[str, ...], timeout: float = 60, reason: str | None = None
    ) -> dict[str, Any]:
        """The status once its phase is one of ``phases`` (and its reason ``reason``), else the last one."""
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            last = self.status(ns, name)
            return last.get("phase") in phases and (reason is None or last.get("reason") == reason)

        wait(check, timeout)
        return last

    def events(self, ns: str, name: str) -> list[str]:
        items = self.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
        return [f"{e.reason}: {e.message}" for e in items]


def ftj_body(name: str, spec: dict[str, Any] | None = None, duration: str = "1s", loss: float = 1.0) -> dict[str, Any]:
    """A valid FineTuneJob for the kwok nodes (CPU-only, small requests) whose simulated trainer
    runs ``duration`` and ends with the completion record (evalLoss ``loss``); ``spec`` is merged in."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "builtin:smollm2-135m-instruct"},
            "dataset": {"source": "pvc://data/train.jsonl"},
            "output": {"pvc": "artifacts"},
            "resources": {"gpus": 0, "cpu": "100m", "memory": "256Mi"},
            "podAnnotations": sim(duration=duration, termination_message=success(loss)),
        },
    }
    merge(body["spec"], spec or {})
    return body


DELETE = object()


def merge(target: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``changes`` into ``target`` (DELETE removes a key)."""
    for key, value in changes.items():
        if value is DELETE:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value
    return target


def at(path: str, value: Any) -> dict[str, Any]:
    """ "a.b.c", v -> {"a": {"b": {"c": v}}}."""
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def repro_manifest(user: str, ns: str, obj: dict[str, Any], verb: str = "apply") -> str:
    who = "" if user == "admin" else f" --as={user}"
    text = json.dumps(obj, separators=(",", ":"))
    if len(text) > 600:
        text = text[:600] + "...(truncated)"
    return f"kubectl{who} -n {ns} {verb} -f - <<< '{text}'"


# --- manifests -------------------------------------------------------------------------------------


@dataclass
class Manifest:
    """A FineTuneJob to try: ``changes`` merged into a valid spec (or ``body`` as a whole).

    expect: "refuse" (at apply, the message naming the field: every fragment in it), "invalid"
    (accepted, then Failed/InvalidSpec quoting the server; a refusal at apply is as good), "accept"
    (a valid edge case: it must run to Succeeded). ``security``: accepted and run, it is a hole."""

    name: str
    changes: dict[str, Any] = field(default_factory=dict)
    fragments: tuple[str, ...] = ()
    expect: str = "refuse"
    actor: str = BOB
    security: bool = False
    verb: str = "apply"
    body: dict[str, Any] | None = None
    replay: str = ""
    """A TrainerConfig field (dotted): when accepted, the operator's config.json is given to the real
    trainer with this field as the operator wrote it (kwok does not run the trainer)."""


def _m(name: str, path: str, value: Any, *fragments: str, **kw: Any) -> Manifest:
    """A case that sets one spec field (dotted path); the field path is the default fragment."""
    return Manifest(name, at(path, value), fragments or (f"spec.{path}",), **kw)


def _labels(n: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(n)}


BAD_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Bogus", "values": ["a"]}]}]
        }
    }
}


def manifest_cases() -> list[Manifest]:
    s = "spec.model.source"
    cases = [
        # method, model
        _m("method-enum", "method", "lora"),
        _m("method-type", "method", 5),
        _m("model-source-scheme", "model.source", "s3://bucket/model", s),
        _m("model-source-empty", "model.source", "", s),
        _m("model-source-host-path", "model.source", "/etc/passwd", "spec.model", "source", security=True),
        _m(
            "model-source-token-path",
            "model.source",
            "/var/run/secrets/kubernetes.io/serviceaccount",
            "spec.model",
            "source",
            security=True,
        ),
        _m("model-source-dotdot-abs", "model.source", "/models/../etc/shadow", "spec.model", "..", security=True),
        _m("model-source-dotdot-pvc", "model.source", "pvc://data/../../etc", "spec.model", "..", security=True),
        _m("model-source-dot-pvc", "model.source", "pvc://data/./x", "spec.model", "'.'"),
        _m("model-source-claim-uppercase", "model.source", "pvc://Data/x", s),
        _m("model-source-hf-dotdot", "model.source", "hf://../../etc/passwd", s, security=True),
        _m("model-source-hf-repo-dotdot", "model.source", "hf://org/..", s, replay="model.source"),
        _m("model-source-builtin-dotdot", "model.source", "builtin:../../x", s),
        _m("model-source-data-no-slash", "model.source", "/data", "spec.model", "/data/"),
        _m("model-source-dataset-prefix", "model.source", "/dataset/x", "spec.model", "/data/"),
        _m("model-gguf-path", "model.ggufFile", "../x.gguf", "spec.model.ggufFile"),
        _m("model-gguf-ext", "model.ggufFile", "model.bin", "spec.model.ggufFile"),
        _m("model-revision-empty", "model.revision", "", "spec.model.revision"),
        Manifest(
            "model-secret-other-namespace",
            at("model.tokenSecretRef", {"name": "team-b/prod-db"}),
            ("spec.model.tokenSecretRef.name",),
            actor=ALICE,
            security=True,
        ),
        Manifest(
            "model-secret-no-name",
            at("model.tokenSecretRef", {"key": "token"}),
            ("spec.model.tokenSecretRef.name",),
            actor=ALICE,
        ),
        Manifest(
            "model-secret-key-slash",
            at("model.tokenSecretRef", {"name": "hub-token", "key": "a/b"}),
            ("spec.model.tokenSecretRef.key",),
            actor=ALICE,
        ),
        _m("model-trust-remote-code-type", "model.trustRemoteCode", "yes"),
        _m("model-adapter-host-path", "model.adapter", "/etc/ssl", "spec.model", "adapter", security=True),
        _m("model-adapter-dotdot", "model.adapter", "pvc://data/../x", "spec.model", "adapter", security=True),
        Manifest("model-missing", {"model": DELETE}, ("spec.model",)),
        # dataset
        Manifest("dataset-source-missing", {"dataset": {"source": DELETE}}, ("spec.dataset.source",)),
        _m("dataset-source-proc", "dataset.source", "/proc/self/environ", "spec.dataset", "source", security=True),
        _m(
            "dataset-source-pvc-escape",
            "dataset.source",
            "pvc://data/../../../etc/passwd",
            "spec.dataset",
            "..",
            security=True,
        ),
        _m("dataset-source-hf", "dataset.source", "hf://org/dataset", "spec.dataset.source", replay="dataset.source"),
        _m(
            "dataset-source-builtin", "dataset.source", "builtin:alpaca", "spec.dataset.source", replay="dataset.source"
        ),
        _m(
            "validation-source-hf",
            "dataset.validationSource",
            "hf://org/dataset",
            "spec.dataset.validationSource",
            replay="dataset.validationSource",
        ),
        _m(
            "general-source-builtin",
            "evaluation.generalSource",
            "builtin:wikitext",
            "spec.evaluation.generalSource",
            replay="evaluation.generalSource",
        ),
        _m(
            "adapter-builtin",
            "model.adapter",
            "builtin:smollm2-135m-instruct",
            "spec.model.adapter",
            replay="model.adapter",
        ),
        _m("dataset-source-file-scheme", "dataset.source", "file:///etc/passwd", "spec.dataset.source"),
        _m("dataset-format-enum", "dataset.format", "csv"),
        _m("dataset-split-max", "dataset.validationSplit", 0.5),
        _m("dataset-split-negative", "dataset.validationSplit", -0.1),
        _m("dataset-split-string", "dataset.validationSplit", "0.1"),
        _m("dataset-min-records-zero", "dataset.minRecords", 0),
        _m("dataset-min-chars-negative", "dataset.minChars", -1),
        _m("dataset-dedup-type", "dataset.deduplicate", "true"),
        Manifest(
            "dataset-labels-one", {"method": "classification", "dataset": {"labels": ["a"]}}, ("spec.dataset.labels",)
        ),
        _m("dataset-labels-on-sft", "dataset.labels", ["a", "b"], "dataset.labels", "classification"),
        Manifest(
            "dataset-labels-empty-item",
            {"method": "classification", "dataset": {"labels": ["a", ""]}},
            ("spec.dataset.labels[1]",),
        ),
        Manifest(
            "dataset-labels-too-many",
            {"method": "classification", "dataset": {"labels": [f"l{i}" for i in range(1001)]}},
            ("spec.dataset.labels",),
        ),
        _m(
            "dataset-validation-host-path",
            "dataset.validationSource",
            "/etc/shadow",
            "spec.dataset",
            "validationSource",
            security=True,
        ),
        Manifest("dpo-with-chat-format", {"method": "dpo", "dataset": {"format": "chat"}}, ("dpo", "dataset.format")),
        Manifest(
            "classification-with-alpaca",
            {"method": "classification", "dataset": {"format": "alpaca"}},
            ("classification", "dataset.format"),
        ),
        _m("sft-with-preference", "dataset.format", "preference", "sft", "preference"),
        # peft
        _m("peft-type-enum", "peft.type", "ia3"),
        _m("peft-r-zero", "peft.r", 0),
        _m("peft-r-huge", "peft.r", 2048),
        _m("peft-alpha-zero", "peft.alpha", 0),
        _m("peft-dropout-one", "peft.dropout", 1.0),
        _m("peft-target-modules-empty", "peft.targetModules", []),
        _m("peft-target-modules-empty-item", "peft.targetModules", [""], "spec.peft.targetModules[0]"),
        _m("peft-target-modules-too-many", "peft.targetModules", [f"m{i}" for i in range(65)]),
        _m("peft-bias-enum", "peft.bias", "some"),
        _m("peft-quantization-with-lora", "peft.quantization", {"bits": 4}, "peft.quantization", "qlora"),
        Manifest(
            "peft-quantization-bits",
            {"peft": {"type": "qlora", "quantization": {"bits": 8}}},
            ("spec.peft.quantization.bits",),
        ),
        Manifest(
            "peft-quant-type",
            {"peft": {"type": "qlora", "quantization": {"quantType": "int4"}}},
            ("spec.peft.quantization.quantType",),
        ),
        Manifest(
            "peft-compute-dtype",
            {"peft": {"type": "qlora", "quantization": {"computeDtype": "fp8"}}},
            ("spec.peft.quantization.computeDtype",),
        ),
        # training
        _m("training-epochs-zero", "training.epochs", 0),
        Manifest(
            "training-epochs-and-max-steps",
            {"training": {"epochs": 2, "maxSteps": 10}},
            ("training.epochs", "training.maxSteps"),
        ),
        _m("training-max-steps-zero", "training.maxSteps", 0),
        _m("training-lr-zero", "training.learningRate", 0),
        _m("training-lr-two", "training.learningRate", 2),
        _m("training-scheduler-enum", "training.lrScheduler", "step"),
        _m("training-warmup-one", "training.warmupRatio", 1.0),
        _m("training-batch-zero", "training.batchSize", 0),
        _m("training-accumulation-huge", "training.gradientAccumulationSteps", 5000),
        _m("training-optimizer-enum", "training.optimizer", "adam"),
        _m("training-weight-decay", "training.weightDecay", 2),
        _m("training-grad-norm-zero", "training.maxGradNorm", 0),
        _m("training-seq-length-small", "training.maxSeqLength", 8),
        _m("training-packing-type", "training.packing", "yes"),
        _m("training-seed-negative", "training.seed", -1),
        _m("training-logging-steps-zero", "training.loggingSteps", 0),
        _m("training-dpo-beta-zero", "training.dpoBeta", 0),
        _m("training-kernels-attention", "training.kernels.attention", "flash"),
        _m("training-unknown-field", "training.learningrate", 0.001, "spec.training.learningrate", "unknown field"),
        # evaluation
        _m("evaluation-samples-max", "evaluation.sampleGenerations", 51),
        _m("evaluation-new-tokens-zero", "evaluation.maxNewTokens", 0),
        _m(
            "evaluation-general-host-path",
            "evaluation.generalSource",
            "/root/.ssh/id_rsa",
            "spec.evaluation",
            "generalSource",
            security=True,
        ),
        # output
        Manifest("output-missing", {"output": DELETE}, ("spec.output",)),
        Manifest("output-pvc-missing", {"output": {"pvc": DELETE}}, ("spec.output.pvc",)),
        _m("output-pvc-pattern", "output.pvc", "Bad_Claim"),
        _m("output-path-absolute", "output.path", "/abs/dir"),
        _m("output-path-parent", "output.path", "../team-b", "spec.output", "..", security=True),
        _m("output-path-inner-parent", "output.path", "a/../../b", "spec.output", "..", security=True),
        _m("output-path-dot", "output.path", ".", "spec.output", "'.'"),
        _m("output-path-double-slash", "output.path", "a//b"),
        _m("output-retention-enum", "output.retention", "Keep"),
        _m("output-replace-type", "output.replace", "true"),
        # resources
        _m("resources-gpus-negative", "resources.gpus", -1),
        _m("resources-gpus-huge", "resources.gpus", 65),
        _m(
            "resources-gpu-product-without-gpu",
            "resources.gpuProduct",
            "NVIDIA-A100-SXM4-80GB",
            "gpuProduct",
            "resources.gpus",
        ),
        _m("resources-cpu-pattern", "resources.cpu", "lots"),
        _m("resources-memory-gb", "resources.memory", "16GB"),
        _m("resources-memory-negative", "resources.memory", "-1Gi"),
        _m("resources-shm-unit", "resources.shmSize", "1Xi"),
        # scheduling and pod-level fields
        _m("node-selector-key", "scheduling.nodeSelector", {"bad key!": "x"}, "spec.scheduling.nodeSelector"),
        _m("node-selector-value", "scheduling.nodeSelector", {"disk": "has space"}, "spec.scheduling.nodeSelector"),
        _m(
            "toleration-operator",
            "scheduling.tolerations",
            [{"key": "nvidia.com/gpu", "operator": "In"}],
            "spec.scheduling.tolerations[0].operator",
        ),
        _m(
            "toleration-effect",
            "scheduling.tolerations",
            [{"key": "nvidia.com/gpu", "effect": "NoWhere"}],
            "spec.scheduling.tolerations[0].effect",
        ),
        _m(
            "toleration-exists-with-value",
            "scheduling.tolerations",
            [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "x"}],
            "spec.scheduling.tolerations[0]",
            "value",
        ),
        _m(
            "toleration-equal-without-key",
            "scheduling.tolerations",
            [{"operator": "Equal", "value": "x"}],
            "spec.scheduling.tolerations[0]",
            "without key",
        ),
        _m(
            "toleration-seconds-without-noexecute",
            "scheduling.tolerations",
            [{"key": "nvidia.com/gpu", "operator": "Exists", "tolerationSeconds": 5}],
            "spec.scheduling.tolerations[0]",
            "tolerationSeconds",
        ),
        _m(
            "toleration-key-pattern",
            "scheduling.tolerations",
            [{"key": "bad key", "operator": "Exists"}],
            "spec.scheduling.tolerations[0].key",
        ),
        _m("affinity-bad-operator", "scheduling.affinity", BAD_AFFINITY, "affinity", "Bogus", expect="invalid"),
        _m("affinity-wrong-type", "scheduling.affinity", {"nodeAffinity": "yes"}, "affinity", expect="invalid"),
        _m(
            "affinity-empty-topology-key",
            "scheduling.affinity",
            {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": ""}
                    ]
                }
            },
            "topologyKey",
            expect="invalid",
        ),
        _m("priority-class-pattern", "scheduling.priorityClassName", "Bad_Name"),
        _m("queue-name-pattern", "scheduling.queueName", "bad queue"),
        _m("image-empty", "image", ""),
        _m("image-too-long", "image", "registry.example/ml/" + "x" * 500),
        _m("pod-labels-key", "podLabels", {"bad key!": "v"}, "spec.podLabels"),
        _m("pod-labels-value", "podLabels", {"team": "has space"}, "spec.podLabels"),
        _m("pod-labels-value-too-long", "podLabels", {"team": "x" * 64}, "spec.podLabels"),
        _m("pod-labels-too-many", "podLabels", _labels(65), "spec.podLabels"),
        Manifest("pod-annotations-key", {"podAnnotations": {"bad key!": "v"}}, ("spec.podAnnotations",)),
        Manifest(
            "pod-annotations-too-large", {"podAnnotations": {"big": "x" * 300_000}}, ("podAnnotations",), verb="create"
        ),
        _m("suspend-type", "suspend", "no"),
        _m("active-deadline-zero", "activeDeadlineSeconds", 0),
        _m("ttl-negative", "ttlSecondsAfterFinished", -1),
        _m("backoff-limit-max", "backoffLimit", 11),
        _m("spec-unknown-field", "priorityClassName", "ml-batch", "spec.priorityClassName", "unknown field"),
        # names and sizes
        Manifest("name-53-chars", body=ftj_body("n" * 53), fragments=("metadata.name", "52")),
        Manifest("name-uppercase", body=ftj_body("Upper"), fragments=("metadata.name",)),
        Manifest(
            "generate-name-too-long",
            body={**ftj_body(""), "metadata": {"generateName": "g" * 50}},
            fragments=("metadata.name", "52"),
            verb="create",
        ),
        Manifest("object-too-large", {"podAnnotations": {"big": "x" * 3_200_000}}, ("too large",), verb="create"),
        # valid edge cases: must run
        Manifest("name-52-chars", body=ftj_body("e" * 52), expect="accept"),
        Manifest("name-with-dots", body=ftj_body("with.dots"), expect="accept"),
        Manifest(
            "pod-labels-cannot-override-operator-labels",
            {"podLabels": {"finetune.dev/finetunejob": "someone-else", "app.kubernetes.io/component": "x"}},
            expect="accept",
        ),
    ]
    return cases


def clone(x: Any) -> Any:
    """A deep copy that keeps the DELETE marker."""
    if isinstance(x, dict):
        return {k: clone(v) for k, v in x.items()}
    if isinstance(x, list):
        return [clone(v) for v in x]
    return x


def manifest_body(case: Manifest, index: int) -> dict[str, Any]:
    if case.body is not None:
        return clone(case.body)
    body = ftj_body(f"m{index:03d}-{case.name}"[:52].rstrip("-"))
    merge(body["spec"], clone(case.changes))
    return body


def run_manifests(env: Env, results: Results) -> None:
    cases = manifest_cases()
    accepted: list[tuple[Manifest, dict[str, Any], subprocess.CompletedProcess[str], float]] = []
    for i, case in enumerate(cases):
        body = manifest_body(case, i)
        t0 = time.monotonic()
        done = env.apply(case.actor, TEAM_A, body, case.verb)
        if done.returncode != 0:
            message = one_line(done.stderr)
            if case.expect == "accept":
                verdict = WRONG
            else:
                verdict = GOOD if all(f in message for f in case.fragments) else POOR
            results.add(
                Case(
                    "manifests",
                    case.name,
                    case.actor,
                    _expectation(case),
                    verdict,
                    message,
                    _repro_short(case, body),
                    time.monotonic() - t0,
                )
            )
        else:
            accepted.append((case, body, done, t0))
    # what the operator made of the accepted ones (and the real trainer of their config)
    trainer = Trainer(env.workdir)
    judged: list[Case] = []
    for case, body, done, t0 in accepted:
        name = _created_name(env, body, done)
        status = env.wait_phase(TEAM_A, name, FINAL, timeout=45) if name else {}
        judged.append(_judge_accepted(env, case, body, name, status, t0))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        replays = {
            c.name: pool.submit(_replay, env, trainer, case, _created_name(env, body, done))
            for (case, body, done, _), c in zip(accepted, judged, strict=True)
            if case.replay and c.verdict == WRONG
        }
        for c in judged:
            if c.name in replays:
                c.verdict, c.observed = replays[c.name].result()(c.observed)
            results.add(c)


def _replay(env: Env, trainer: Trainer, case: Manifest, name: str) -> Callable[[str], tuple[str, str]]:
    """The operator's config.json for this run given to the real trainer (local tiny model and data,
    except ``case.replay``, as the operator wrote it): a refusal naming the field is a late one (poor)."""
    operator_cfg = json.loads(env.core.read_namespaced_config_map(f"{name}-config", TEAM_A).data["config.json"])
    d = trainer.dir / f"replay-{case.name}"
    data = _write_lines(d / "train.jsonl", _chat(24))
    cfg = trainer.config(data, d / "out", f"replay-{case.name}")
    section, key = case.replay.split(".")
    value = operator_cfg[section][key]
    cfg.setdefault(section, {})[key] = value
    run = trainer.run(cfg)
    refused = run.rc in (2, 3, 4) and (key in run.message or str(value) in run.message)

    def verdict(observed: str) -> tuple[str, str]:
        text = (
            f"{observed}; kwok does not run the trainer: the real trainer on the operator's config ({case.replay}="
            f"{value!r}) exits {run.rc} {run.reason}: {run.message}"
        )
        return (POOR if refused else WRONG), text + (
            " (refused only when the trainer starts, after scheduling and the image pull)" if refused else ""
        )

    return verdict


def _expectation(case: Manifest) -> str:
    if case.expect == "accept":
        return "accepted and Succeeded"
    where = "refused at apply" if case.expect == "refuse" else "refused at apply, or Failed/InvalidSpec"
    return f"{where}, naming {' & '.join(case.fragments)}"


def _repro_short(case: Manifest, body: dict[str, Any]) -> str:
    shown = json.loads(json.dumps(body))
    for key in ("podAnnotations", "podLabels"):
        if key in shown["spec"] and len(json.dumps(shown["spec"][key])) > 300:
            shown["spec"][key] = f"<{len(json.dumps(body['spec'][key]))} bytes>"
    if "dataset" in shown["spec"] and len(json.dumps(shown["spec"]["dataset"])) > 300:
        shown["spec"]["dataset"] = "<1001 labels>"
    return repro_manifest(case.actor, TEAM_A, shown, case.verb)


def _created_name(env: Env, body: dict[str, Any], done: subprocess.CompletedProcess[str]) -> str:
    name = body["metadata"].get("name")
    if name:
        return name
    # generateName: "finetunejob.finetune.dev/<name> created"
    return done.stdout.strip().split()[0].split("/")[-1] if done.stdout.strip() else ""


def _judge_accepted(
    env: Env, case: Manifest, body: dict[str, Any], name: str, status: dict[str, Any], t0: float
) -> Case:
    phase, reason, message = status.get("phase"), status.get("reason"), one_line(status.get("message") or "")
    observed = f"accepted by the API server; status {phase}/{reason}: {message}"
    jobs = env.jobs(TEAM_A, name) if name else []

    def verdict(v: str, text: str = observed) -> Case:
        return Case(
            "manifests",
            case.name,
            case.actor,
            _expectation(case),
            v,
            text,
            _repro_short(case, body),
            time.monotonic() - t0,
        )

    if case.expect == "accept":
        if phase != "Succeeded":
            return verdict(WRONG)
        if case.name == "pod-labels-cannot-override-operator-labels":
            pods = env.core.list_namespaced_pod(TEAM_A, label_selector=f"finetune.dev/finetunejob={name}").items
            labels = pods[0].metadata.labels if pods else {}
            if labels.get("app.kubernetes.io/component") != "trainer":
                return verdict(WRONG, f"{observed}; pod labels {labels}")
            return verdict(
                GOOD,
                f"{observed}; pod labels keep the operator's: "
                f"finetune.dev/finetunejob={labels.get('finetune.dev/finetunejob')}",
            )
        return verdict(GOOD)
    if case.expect == "invalid" and phase == "Failed" and reason == "InvalidSpec":
        named = all(f in message for f in case.fragments) and "\n" not in (status.get("message") or "")
        return verdict(GOOD if named else POOR)
    if case.security and jobs:
        return verdict(SECURITY, f"{observed}; the trainer Job {jobs[0].metadata.name} was created with it")
    if phase == "Failed" and reason in ("InvalidSpec", "PodRejected"):
        return verdict(POOR, observed + " (refused only when the operator created the Job, not at apply)")
    return verdict(WRONG)


# --- the real trainer ------------------------------------------------------------------------------

TRAINER_BIN = ROOT / ".venv" / "bin" / "finetune-train"


@dataclass
class TrainerRun:
    rc: int
    summary: dict[str, Any]
    log: str

    @property
    def reason(self) -> str:
        return str(self.summary.get("reason") or ("Succeeded" if self.rc == 0 else f"exit {self.rc}"))

    @property
    def message(self) -> str:
        return one_line(self.summary.get("message") or (self.log.strip().splitlines() or [""])[-1])


class Trainer:
    """`finetune-train` as the trainer image runs it, on a tiny random Llama built once (no downloads)."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "trainer"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._model: Path | None = None
        self._lock = threading.Lock()
        self._count = 0

    def model(self) -> Path:
        with self._lock:
            if self._model is None:
                self._model = build_tiny_llama(self.dir / "tiny-llama")
            return self._model

    def config(self, data: Path, out: Path, run_id: str, **sections: Any) -> dict[str, Any]:
        """A small, fast TrainerConfig (wire form), as the operator writes it for run ``run_id``."""
        cfg = make_config(self.model(), data, out)
        cfg["output"] = {"dir": str(out), "runId": run_id, "owner": f"{TEAM_A}/{run_id}"}
        for section, values in sections.items():
            if isinstance(values, dict) and isinstance(cfg.get(section), dict):
                merge(cfg[section], values)
            else:
                cfg[section] = values
        return cfg

    def run(self, cfg: dict[str, Any], *command: str, timeout: float = 600) -> TrainerRun:
        with self._lock:
            self._count += 1
            n = self._count
        cfg = clone(cfg)
        term = self.dir / f"run-{n}.termination"
        cfg.setdefault("reporting", {})["terminationMessagePath"] = str(term)
        path = self.dir / f"run-{n}.json"
        path.write_text(json.dumps(cfg))
        argv = ["nice", "-n", "10", str(TRAINER_BIN), "--config", str(path), *command]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "FINETUNE_STATUS_PATCH": "0"}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        summary: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            summary = json.loads(term.read_text())
        if not summary and command and done.stdout.strip():
            with contextlib.suppress(ValueError):
                summary = json.loads(done.stdout.strip().splitlines()[-1])
        return TrainerRun(done.returncode, summary, done.stdout[-4000:] + done.stderr[-4000:])

    def cleanup(self, out: Path, run_id: str) -> TrainerRun:
        """`finetune-train cleanup` (what the operator's cleanup Job runs for retention: Delete)."""
        argv = ["nice", "-n", "10", str(TRAINER_BIN), "cleanup", "--output", str(out), "--run-id", run_id]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        summary: dict[str, Any] = {}
        with contextlib.suppress(ValueError, IndexError):
            summary = json.loads(done.stdout.strip().splitlines()[-1])
        return TrainerRun(done.returncode, summary, done.stdout + done.stderr)


# --- data faults (the real trainer) ----------------------------------------------------------------


def _chat(n: int, seed: int = 0) -> list[str]:
    return [json.dumps(r) for r in records("chat", n, seed)]


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _published(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.is_dir() else []


def _sums(out: Path) -> dict[str, str]:
    """sha256 of every file under ``out`` (relative names)."""
    import hashlib

    return (
        {
            str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }
        if out.is_dir()
        else {}
    )


def data_refusal(
    trainer: Trainer,
    name: str,
    d: Path,
    data: Path,
    reason: str,
    fragments: tuple[str, ...],
    expected: str,
    **sections: Any,
) -> Case:
    """Run the trainer on bad input: it must exit with ``reason`` naming every fragment, and publish nothing."""
    t0 = time.monotonic()
    out = d / "out"
    cfg = trainer.config(data, out, f"run-{name}", **sections)
    run = trainer.run(cfg)
    observed = f"exit {run.rc} {run.reason}: {run.message}"
    leftovers = [f for f in _published(out) if f not in ("_RUN", "progress.json")]
    if run.rc == 0:
        verdict = WRONG
    elif run.reason != reason or leftovers:
        verdict = WRONG
        if leftovers:
            observed += f"; left in the output directory: {leftovers}"
    else:
        verdict = GOOD if all(f in run.message for f in fragments) else POOR
    return Case(
        "data",
        name,
        "trainer",
        expected,
        verdict,
        observed,
        f"finetune-train --config <{json.dumps(_cfg_digest(cfg))}> (data: {data.name})",
        time.monotonic() - t0,
    )


def _cfg_digest(cfg: dict[str, Any]) -> dict[str, Any]:
    keep = {k: cfg[k] for k in ("method", "dataset") if k in cfg}
    keep["output"] = cfg["output"]
    return keep


def data_cases(trainer: Trainer, base: Path) -> list[Callable[[], list[Case]]]:
    """One callable per scenario (each in its own directory under ``base``)."""

    def refusal(
        name: str,
        lines: list[str] | bytes | None,
        reason: str,
        fragments: tuple[str, ...],
        expected: str = "",
        file: str = "train.jsonl",
        **sections: Any,
    ) -> Callable[[], list[Case]]:
        def run() -> list[Case]:
            d = base / name
            d.mkdir(parents=True, exist_ok=True)
            data = d / file
            if isinstance(lines, bytes):
                data.write_bytes(lines)
            elif lines is not None:
                _write_lines(data, lines)
            return [
                data_refusal(
                    trainer,
                    name,
                    d,
                    data,
                    reason,
                    fragments,
                    expected or f"exit {reason} naming {' & '.join(fragments)}; nothing published",
                    **sections,
                )
            ]

        return run

    good = _chat(24)
    rng = random.Random(7)
    classification = [
        json.dumps(
            {
                "text": f"sample {i} {'great' if i % 2 else 'awful'}",
                "label": "neutral" if i == 5 else ("pos" if i % 2 else "neg"),
            }
        )
        for i in range(24)
    ]
    cases = [
        refusal("malformed-json-line", good[:6] + ["{not json"] + good[6:], "InvalidData", ("train.jsonl:7",)),
        refusal(
            "record-missing-field",
            good[:3] + [json.dumps({"messages": [{"role": "user", "content": "hi"}]})] + good[3:],
            "InvalidData",
            ("train.jsonl:4",),
        ),
        refusal(
            "wrong-field-name", good[:2] + [json.dumps({"mesages": []})] + good[2:], "InvalidData", ("train.jsonl:3",)
        ),
        refusal(
            "mixed-formats",
            good[:12] + [json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}) for i in range(8)],
            "InvalidData",
            ("train.jsonl:13",),
        ),
        refusal("empty-file", [], "InvalidData", ("train.jsonl",)),
        refusal("whitespace-only-file", ["", "   ", ""], "InvalidData", ("train.jsonl",)),
        refusal("binary-file", bytes(rng.getrandbits(8) for _ in range(4096)), "InvalidData", ("train.jsonl",)),
        refusal("utf16-encoding", ("\n".join(good) + "\n").encode("utf-16"), "InvalidData", ("train.jsonl",)),
        refusal("too-few-records", good[:5], "InvalidData", ("minRecords",)),
        refusal("duplicate-only", [good[0]] * 30, "InvalidData", ("duplicate",)),
        refusal("json-array-line", good[:2] + ["[1, 2, 3]"] + good[2:], "InvalidData", ("train.jsonl:3",)),
        refusal(
            "empty-answers",
            [
                json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": ""}]})
                for i in range(20)
            ],
            "InvalidData",
            ("train.jsonl",),
        ),
        refusal(
            "classification-label-mismatch",
            classification,
            "InvalidData",
            ("train.jsonl:6", "neutral"),
            method="classification",
            dataset={"format": "classification", "labels": ["pos", "neg"]},
        ),
        refusal("dpo-on-chat-data", good, "InvalidData", ("train.jsonl",), method="dpo"),
        refusal("dataset-missing", None, "InvalidData", ("train.jsonl",), file="train.jsonl"),
        refusal("model-missing", good, "ModelNotFound", ("no-such-model",), model={"source": "/models/no-such-model"}),
        refusal("hf-model-source-dotdot", good, "ModelNotFound", ("hf://org/..",), model={"source": "hf://org/.."}),
    ]

    # validation file with a bad line 2, and a directory where the data file should be
    def bad_validation() -> list[Case]:
        d = base / "validation-file-bad"
        train = _write_lines(d / "train.jsonl", good)
        val = _write_lines(d / "eval.jsonl", good[:1] + ['{"messages": 5}'] + good[1:4])
        return [
            data_refusal(
                trainer,
                "validation-file-bad",
                d,
                train,
                "InvalidData",
                ("eval.jsonl:2",),
                "exit InvalidData naming eval.jsonl:2; nothing published",
                dataset={"validationSource": str(val)},
            )
        ]

    def directory_as_data() -> list[Case]:
        d = base / "dataset-is-directory"
        (d / "train.jsonl").mkdir(parents=True, exist_ok=True)
        return [
            data_refusal(
                trainer,
                "dataset-is-directory",
                d,
                d / "train.jsonl",
                "InvalidData",
                ("train.jsonl",),
                "exit InvalidData naming the path; nothing published",
            )
        ]

    def latin1() -> list[Case]:
        d = base / "latin1-encoding"
        d.mkdir(parents=True, exist_ok=True)
        lines = (
            good[:2]
            + [
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "caf\u00e9"},
                            {"role": "assistant", "content": "cr\u00e8me"},
                        ]
                    },
                    ensure_ascii=False,
                )
            ]
            + good[2:]
        )
        (d / "train.jsonl").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        return [
            data_refusal(
                trainer,
                "latin1-encoding",
                d,
                d / "train.jsonl",
                "InvalidData",
                ("train.jsonl", "UTF-8"),
                "exit InvalidData naming train.jsonl as not UTF-8; nothing published",
            )
        ]

    def huge_line() -> list[Case]:
        t0 = time.monotonic()
        d = base / "huge-line"
        big = json.dumps(
            {"messages": [{"role": "user", "content": "x " * 2_500_000}, {"role": "assistant", "content": "ok"}]}
        )
        data = _write_lines(d / "train.jsonl", good[:3] + [big] + good[3:])
        run = trainer.run(trainer.config(data, d / "out", "run-huge"))
        ok = run.rc == 0 or (run.reason == "InvalidData" and "train.jsonl:4" in run.message)
        return [
            Case(
                "data",
                "huge-line",
                "trainer",
                "trains (truncated to maxSeqLength) or InvalidData naming line 4",
                GOOD if ok else WRONG,
                f"5 MB line: exit {run.rc} {run.reason}: {run.message}",
                "a 5 MB chat record on line 4 of 25",
                time.monotonic() - t0,
            )
        ]

    return [*cases, latin1, bad_validation, directory_as_data, huge_line, *output_scenarios(trainer, base, good)]


def output_scenarios(trainer: Trainer, base: Path, good: list[str]) -> list[Callable[[], list[Case]]]:
    """Output directories shared with input data or with another run, retention Delete, replace."""
    artifacts = ("adapter_model.safetensors", "adapter_config.json", "_COMPLETE", "SHA256SUMS")

    def case(name: str, expected: str, verdict: str, observed: str, repro: str, t0: float) -> Case:
        return Case("data", name, "trainer", expected, verdict, observed, repro, time.monotonic() - t0)

    def next_to_input() -> list[Case]:
        t0 = time.monotonic()
        shared = base / "next-to-input" / "shared"
        train = _write_lines(shared / "train.jsonl", good)
        val = _write_lines(shared / "eval.jsonl", good[:8])
        (shared / "notes.txt").write_text("the team's notes\n")
        inputs = _sums(shared)
        run = trainer.run(trainer.config(train, shared, "run-next", dataset={"validationSource": str(val)}))
        after = _sums(shared)
        kept = {k: after.get(k) == v for k, v in inputs.items()}
        repro = "output.dir = the directory holding train.jsonl, eval.jsonl, notes.txt; then cleanup --run-id"
        cases = [
            case(
                "output-next-to-input",
                "trains; the input files stay byte for byte",
                GOOD if run.rc == 0 and all(kept.values()) else (LOST if not all(kept.values()) else WRONG),
                f"exit {run.rc} {run.reason}: {run.message}; inputs unchanged: {kept}",
                repro,
                t0,
            )
        ]
        t1 = time.monotonic()
        clean = trainer.cleanup(shared, "run-next")
        after = _sums(shared)
        kept = {k: after.get(k) == v for k, v in inputs.items()}
        gone = [a for a in artifacts if (shared / a).exists()]
        verdict = LOST if not all(kept.values()) else (GOOD if not gone and clean.rc == 0 else WRONG)
        cases.append(
            case(
                "retention-delete-next-to-input",
                "removes the run's files only; inputs stay",
                verdict,
                f"cleanup: {clean.summary or clean.log[-300:]}; inputs unchanged: {kept}; artifacts left: {gone}",
                repro,
                t1,
            )
        )
        return cases

    def same_output() -> list[Case]:
        t0 = time.monotonic()
        d = base / "same-output"
        train = _write_lines(d / "train.jsonl", good)
        out = d / "out"
        first = trainer.run(trainer.config(train, out, "run-first"))
        before = _sums(out)
        second = trainer.run(trainer.config(train, out, "run-second", training={"learningRate": 1e-3}))
        after = _sums(out)
        changed = sorted(k for k in before if after.get(k) != before[k] and k != "progress.json")
        repro = "two runs (runId run-first, run-second) with the same output.dir"
        if first.rc != 0:
            return [
                case(
                    "same-output-path",
                    "second run OutputExists, first intact",
                    ERROR,
                    f"first run failed: {first.reason}: {first.message}",
                    repro,
                    t0,
                )
            ]
        verdict = LOST if changed else (GOOD if second.reason == "OutputExists" else WRONG)
        cases = [
            case(
                "same-output-path",
                "second run OutputExists naming the first run; first run's files intact",
                verdict,
                f"second: exit {second.rc} {second.reason}: {second.message}; first's files changed: {changed}",
                repro,
                t0,
            )
        ]
        t1 = time.monotonic()
        (out / "team-notes.txt").write_text("kept by hand\n")
        clean_second = trainer.cleanup(out, "run-second")
        after = _sums(out)
        changed = sorted(k for k in before if after.get(k) != before[k] and k != "progress.json")
        cases.append(
            case(
                "retention-delete-of-other-run",
                "cleanup of run-second keeps run-first's result",
                LOST if changed else (GOOD if clean_second.summary.get("outcome") == "kept" else WRONG),
                f"cleanup --run-id run-second: {clean_second.summary or clean_second.log[-300:]}; "
                f"run-first's files changed: {changed}",
                repro + "; cleanup --run-id run-second",
                t1,
            )
        )
        t2 = time.monotonic()
        clean_first = trainer.cleanup(out, "run-first")
        left = [a for a in artifacts if (out / a).exists()]
        notes = (out / "team-notes.txt").exists()
        cases.append(
            case(
                "retention-delete-shared-directory",
                "cleanup of run-first removes its files, keeps others'",
                LOST if not notes or not train.exists() else (GOOD if not left else WRONG),
                f"cleanup --run-id run-first: {clean_first.summary or clean_first.log[-300:]}; artifacts "
                f"left {left}; team-notes.txt kept: {notes}",
                repro + "; cleanup --run-id run-first",
                t2,
            )
        )
        return cases

    def replace() -> list[Case]:
        t0 = time.monotonic()
        d = base / "replace"
        train = _write_lines(d / "train.jsonl", good)
        out = d / "out"
        trainer.run(trainer.config(train, out, "run-old"))
        (out / "team-notes.txt").write_text("kept by hand\n")
        new = trainer.run(trainer.config(train, out, "run-new", output={"replace": True}))
        record = json.loads((out / "_RUN").read_text()) if (out / "_RUN").exists() else {}
        notes = (out / "team-notes.txt").exists()
        ok = new.rc == 0 and record.get("runId") == "run-new" and (out / "_COMPLETE").exists()
        return [
            case(
                "output-replace",
                "replaces run-old's result; other files stay",
                LOST if not notes else (GOOD if ok else WRONG),
                f"exit {new.rc} {new.reason}; _RUN {record.get('runId')}; team-notes.txt kept: {notes}",
                "run-old, then run-new with output.replace: true on the same dir",
                t0,
            )
        ]

    def same_run_again() -> list[Case]:
        t0 = time.monotonic()
        d = base / "same-run-again"
        train = _write_lines(d / "train.jsonl", good)
        cfg = trainer.config(train, d / "out", "run-again")
        first = trainer.run(cfg)
        adapter = _sums(d / "out").get("adapter_model.safetensors")
        again = trainer.run(cfg)
        same = _sums(d / "out").get("adapter_model.safetensors") == adapter and adapter is not None
        return [
            case(
                "same-run-again",
                "a retried pod of the same run reports the finished result",
                GOOD if first.rc == 0 and again.rc == 0 and same else WRONG,
                f"again: exit {again.rc} {again.reason} {again.summary.get('metrics', {}).get('evalLoss')}; "
                f"adapter unchanged: {same}",
                "the same config (runId) twice",
                t0,
            )
        ]

    def unowned_result() -> list[Case]:
        t0 = time.monotonic()
        d = base / "unowned-result"
        train = _write_lines(d / "train.jsonl", good)
        out = d / "out"
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_model.safetensors").write_bytes(b"someone's adapter")
        run = trainer.run(trainer.config(train, out, "run-newcomer"))
        intact = (out / "adapter_model.safetensors").read_bytes() == b"someone's adapter"
        return [
            case(
                "output-holds-unowned-result",
                "OutputExists; the file stays",
                LOST if not intact else (GOOD if run.reason == "OutputExists" else WRONG),
                f"exit {run.rc} {run.reason}: {run.message}; file intact: {intact}",
                "an adapter_model.safetensors without _RUN in output.dir",
                t0,
            )
        ]

    return [next_to_input, same_output, replace, same_run_again, unowned_result]


def run_data(env: Env, results: Results) -> None:
    trainer = Trainer(env.workdir)
    trainer.model()
    scenarios = data_cases(trainer, env.workdir / "data")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for future in concurrent.futures.as_completed([pool.submit(_guarded, "data", s) for s in scenarios]):
            for c in future.result():
                results.add(c)


def _guarded(category: str, scenario: Callable[[], list[Case]]) -> list[Case]:
    """Run a scenario; a harness failure becomes an ERROR case (never counted as a finding)."""
    try:
        return scenario()
    except Exception:  # noqa: BLE001
        return [Case(category, getattr(scenario, "__name__", "?"), "harness", "", ERROR, traceback.format_exc())]


# --- updates and child tampering -------------------------------------------------------------------


class Scenario:
    """Helpers for one scenario: its cases are built with ``case`` and returned as a list."""

    def __init__(self, env: Env, category: str, ns: str = TEAM_A):
        self.env, self.category, self.ns = env, category, ns
        self.cases: list[Case] = []
        self.t0 = time.monotonic()

    def case(
        self, name: str, actor: str, expected: str, ok: bool | str, observed: str, repro: str, bad: str = WRONG
    ) -> None:
        verdict = ok if isinstance(ok, str) else (GOOD if ok else bad)
        self.cases.append(
            Case(self.category, name, actor, expected, verdict, observed, repro, time.monotonic() - self.t0)
        )
        self.t0 = time.monotonic()

    def create(
        self, name: str, spec: dict[str, Any] | None = None, duration: str = "1s", loss: float = 1.0, actor: str = ALICE
    ) -> dict[str, Any]:
        body = ftj_body(name, spec, duration, loss)
        done = self.env.apply(actor, self.ns, body, "create")
        if done.returncode != 0:
            raise RuntimeError(f"creating {name} failed: {done.stderr}")
        return self.env.ftj(self.ns, name) or {}

    def phase(self, name: str, *phases: str, timeout: float = 60, reason: str | None = None) -> dict[str, Any]:
        return self.env.wait_phase(self.ns, name, phases, timeout, reason)

    def kubectl(self, actor: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.env.as_user(actor, *args, input=input)

    def job(self, name: str) -> Any:
        jobs = self.env.jobs(self.ns, name)
        return jobs[0] if len(jobs) == 1 else None

    def children_gone(self, name: str) -> bool:
        core, ns = self.env.core, self.ns
        return not (
            self.env.jobs(ns, name)
            or self.env.pods(ns, name)
            or core.list_namespaced_config_map(ns, field_selector=f"metadata.name={name}-config").items
            or core.list_namespaced_service_account(ns, field_selector=f"metadata.name={name}-trainer").items
        )


def _status_line(status: dict[str, Any]) -> str:
    metrics = status.get("metrics")
    return f"{status.get('phase')}/{status.get('reason')}: {one_line(status.get('message') or '')}" + (
        f" metrics={metrics}" if metrics else ""
    )


def _patch(name: str, patch: dict[str, Any], extra: str = "") -> tuple[str, ...]:
    return ("patch", "ftj", name, "-n", TEAM_A, "--type=merge", "-p", json.dumps(patch), *([extra] if extra else []))


def u_immutable(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    name = "u-immutable"
    sc.create(name, duration="90s")
    sc.phase(name, "Running", timeout=40)
    tries = [
        ("change-learning-rate", {"spec": {"training": {"learningRate": 0.001}}}, "spec.training"),
        ("change-model-source", {"spec": {"model": {"source": "builtin:minilm-l6"}}}, "spec.model"),
        ("add-image", {"spec": {"image": "ghcr.io/finetune-operator/trainer:0.2.0"}}, "spec.image"),
        ("remove-resources", {"spec": {"resources": None}}, "spec.resources"),
        ("change-output-path", {"spec": {"output": {"path": "elsewhere"}}}, "spec.output"),
    ]
    for label, patch, fragment in tries:
        before = env.ftj(TEAM_A, name)["spec"]
        done = sc.kubectl(ALICE, *_patch(name, patch))
        after = env.ftj(TEAM_A, name)["spec"]
        msg = one_line(done.stderr or done.stdout)
        ok = done.returncode != 0 and fragment in msg and "immutable" in msg.lower() and before == after
        verdict = GOOD if ok else (POOR if done.returncode != 0 and before == after else WRONG)
        sc.case(
            f"immutable-{label}",
            ALICE,
            f"refused naming {fragment} as immutable; spec unchanged",
            verdict,
            msg + ("" if before == after else " (the spec CHANGED)"),
            "kubectl " + " ".join(_patch(name, patch)),
        )
    env.delete_ftj(TEAM_A, name)
    return sc.cases


def u_suspend_resume(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    name = "u-suspend"
    sc.create(name, duration="10s", loss=0.42)
    sc.phase(name, "Running", timeout=40)
    sc.kubectl(ALICE, *_patch(name, {"spec": {"suspend": True}}))
    status = sc.phase(name, "Suspended", timeout=30)
    wait(lambda: sc.job(name) is not None and sc.job(name).spec.suspend, 20)
    job = sc.job(name)
    podless = wait(lambda: not [p for p in env.pods(TEAM_A, name) if not p.metadata.deletion_timestamp], 40)
    ok = status.get("phase") == "Suspended" and job is not None and job.spec.suspend and podless
    sc.case(
        "suspend-running-run",
        ALICE,
        "Suspended; the Job suspended and its pod deleted",
        ok,
        f"{_status_line(status)}; job.suspend={job.spec.suspend if job else None}; pod gone={bool(podless)}",
        'kubectl patch ftj u-suspend --type=merge -p \'{"spec":{"suspend":true}}\' (while Running)',
    )
    sc.kubectl(ALICE, *_patch(name, {"spec": {"suspend": False}}))
    status = sc.phase(name, *FINAL, timeout=60)
    jobs = env.jobs(TEAM_A, name)
    ok = status.get("phase") == "Succeeded" and status.get("metrics") == {"evalLoss": 0.42} and len(jobs) == 1
    sc.case(
        "resume-suspended-run",
        ALICE,
        "resumes, Succeeded with its metrics, one Job",
        ok,
        f"{_status_line(status)}; jobs={len(jobs)}",
        "then suspend: false",
    )
    # a finished run: suspend changes nothing
    sc.kubectl(ALICE, *_patch(name, {"spec": {"suspend": True}}))
    time.sleep(3)
    status = env.status(TEAM_A, name)
    sc.case(
        "suspend-finished-run",
        ALICE,
        "stays Succeeded",
        status.get("phase") == "Succeeded",
        _status_line(status),
        "suspend: true on a Succeeded run",
    )
    env.delete_ftj(TEAM_A, name)
    return sc.cases


def u_created_suspended(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    name = "u-born-suspended"
    sc.create(name, {"suspend": True})
    status = sc.phase(name, "Suspended", timeout=40)
    time.sleep(2)
    job, pods = sc.job(name), env.pods(TEAM_A, name)
    sc.case(
        "created-suspended",
        ALICE,
        "Suspended, a suspended Job, no pod",
        status.get("phase") == "Suspended" and job is not None and job.spec.suspend and not pods,
        f"{_status_line(status)}; job={job is not None}; pods={len(pods)}",
        "create with spec.suspend: true",
    )
    sc.kubectl(ALICE, *_patch(name, {"spec": {"suspend": False}}))
    status = sc.phase(name, *FINAL, timeout=60)
    sc.case(
        "resume-never-started",
        ALICE,
        "Succeeded",
        status.get("phase") == "Succeeded",
        _status_line(status),
        "then suspend: false",
    )
    env.delete_ftj(TEAM_A, name)
    return sc.cases


def u_ttl(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    done_name, running_name = "u-ttl-finished", "u-ttl-running"
    sc.create(done_name, loss=0.31)
    sc.create(running_name, {"ttlSecondsAfterFinished": 3600}, duration="8s", loss=0.32)
    sc.phase(done_name, *FINAL, timeout=60)
    sc.kubectl(ALICE, *_patch(done_name, {"spec": {"ttlSecondsAfterFinished": 0}}))
    gone = wait(lambda: not env.jobs(TEAM_A, done_name), 40)
    status = env.status(TEAM_A, done_name)
    sc.case(
        "ttl-set-after-finish",
        ALICE,
        "the Job is removed; status and metrics stay",
        bool(gone) and status.get("phase") == "Succeeded" and status.get("metrics") == {"evalLoss": 0.31},
        f"job removed={bool(gone)}; {_status_line(status)}",
        "ttlSecondsAfterFinished: 0 on a Succeeded run",
    )
    sc.phase(running_name, "Running", timeout=40)
    sc.kubectl(ALICE, *_patch(running_name, {"spec": {"ttlSecondsAfterFinished": 0}}))
    status = sc.phase(running_name, *FINAL, timeout=60)
    gone = wait(lambda: not env.jobs(TEAM_A, running_name), 40)
    status = env.status(TEAM_A, running_name)
    ok = bool(gone) and status.get("phase") == "Succeeded" and status.get("metrics") == {"evalLoss": 0.32}
    lost = status.get("phase") != "Succeeded" or not status.get("metrics")
    sc.case(
        "ttl-lowered-while-running",
        ALICE,
        "result recorded, then the Job removed",
        GOOD if ok else (LOST if lost else WRONG),
        f"job removed={bool(gone)}; {_status_line(status)}",
        "ttlSecondsAfterFinished 3600 -> 0 while Running",
    )
    for name in (done_name, running_name):
        env.delete_ftj(TEAM_A, name)
    return sc.cases


def u_children_deleted(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    # the Job deleted mid-run
    sc.create("u-job-deleted", duration="90s")
    sc.phase("u-job-deleted", "Running", timeout=40)
    sc.kubectl(ALICE, "delete", "job", "u-job-deleted-trainer", "-n", TEAM_A, "--wait=false")
    status = sc.phase("u-job-deleted", *FINAL, timeout=40)
    time.sleep(3)
    again = env.jobs(TEAM_A, "u-job-deleted")
    sc.case(
        "job-deleted-mid-run",
        ALICE,
        "Failed/JobDeleted; not silently recreated",
        status.get("reason") == "JobDeleted" and not [j for j in again if not j.metadata.deletion_timestamp],
        f"{_status_line(status)}; jobs now={len(again)}",
        "kubectl delete job u-job-deleted-trainer (Running)",
    )
    # the pod deleted mid-run
    sc.create("u-pod-deleted", duration="90s")
    status = sc.phase("u-pod-deleted", "Running", timeout=40)
    sc.kubectl(ALICE, "delete", "pod", status.get("podName", "?"), "-n", TEAM_A, "--wait=false")
    status = sc.phase("u-pod-deleted", *FINAL, timeout=60)
    sc.case(
        "pod-deleted-mid-run",
        ALICE,
        "Failed/PodDeleted saying so",
        status.get("reason") == "PodDeleted",
        _status_line(status),
        "kubectl delete pod <status.podName> (Running)",
    )
    # the ConfigMap deleted mid-run: the pod has its config, the run goes on
    sc.create("u-cm-deleted", duration="6s", loss=0.5)
    sc.phase("u-cm-deleted", "Running", timeout=40)
    sc.kubectl(ALICE, "delete", "configmap", "u-cm-deleted-config", "-n", TEAM_A)
    status = sc.phase("u-cm-deleted", *FINAL, timeout=60)
    sc.case(
        "configmap-deleted-mid-run",
        ALICE,
        "the running trainer is unaffected: Succeeded",
        status.get("phase") == "Succeeded",
        _status_line(status),
        "kubectl delete configmap u-cm-deleted-config",
    )
    # ServiceAccount and ConfigMap deleted while suspended: re-created on resume
    sc.create("u-orphaned", {"suspend": True})
    sc.phase("u-orphaned", "Suspended", timeout=40)
    wait(lambda: env.jobs(TEAM_A, "u-orphaned"), 20)
    env.run("delete", "serviceaccount", "u-orphaned-trainer", "-n", TEAM_A)
    env.run("delete", "configmap", "u-orphaned-config", "-n", TEAM_A)
    sc.kubectl(ALICE, *_patch("u-orphaned", {"spec": {"suspend": False}}))
    status = sc.phase("u-orphaned", *FINAL, timeout=120)
    sc.case(
        "sa-and-configmap-deleted-while-suspended",
        "admin",
        "re-created on resume; Succeeded",
        status.get("phase") == "Succeeded",
        _status_line(status),
        "suspended run; delete sa u-orphaned-trainer and cm u-orphaned-config; resume",
    )
    # RoleBinding deleted while suspended
    sc.create("u-rb-deleted", {"suspend": True}, duration="15s")
    sc.phase("u-rb-deleted", "Suspended", timeout=40)
    wait(lambda: env.jobs(TEAM_A, "u-rb-deleted"), 20)
    env.run("delete", "rolebinding", "u-rb-deleted-trainer", "-n", TEAM_A)
    sc.kubectl(ALICE, *_patch("u-rb-deleted", {"spec": {"suspend": False}}))
    status = sc.phase("u-rb-deleted", *FINAL, timeout=90)
    back = env.run("get", "rolebinding", "u-rb-deleted-trainer", "-n", TEAM_A).returncode == 0
    sc.case(
        "rolebinding-deleted-while-suspended",
        "admin",
        "the trainer's RoleBinding re-created (else its progress patches are refused, silently)",
        back,
        f"{_status_line(status)}; RoleBinding re-created: {back}",
        "suspended run; kubectl delete rolebinding u-rb-deleted-trainer; resume; run to the end",
    )
    for name in ("u-job-deleted", "u-pod-deleted", "u-cm-deleted", "u-orphaned", "u-rb-deleted"):
        env.delete_ftj(TEAM_A, name)
    return sc.cases


def u_children_patched(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    name = "u-tamper"
    sc.create(name, duration="12s", loss=0.7, actor=BOB)
    sc.phase(name, "Running", timeout=40)
    done = sc.kubectl(
        ALICE,
        "patch",
        "configmap",
        f"{name}-config",
        "-n",
        TEAM_A,
        "--type=merge",
        "-p",
        json.dumps({"data": {"config.json": "{}"}}),
    )
    sc.case(
        "configmap-patched",
        ALICE,
        "refused (immutable ConfigMap)",
        done.returncode != 0,
        one_line(done.stderr or done.stdout),
        f"kubectl patch configmap {name}-config (data)",
    )
    done = sc.kubectl(
        ALICE,
        "patch",
        "rolebinding",
        f"{name}-trainer",
        "-n",
        TEAM_A,
        "--type=merge",
        "-p",
        json.dumps({"roleRef": {"name": "admin"}}),
    )
    sc.case(
        "rolebinding-patched-by-editor",
        ALICE,
        "refused (edit has no RBAC rights)",
        done.returncode != 0,
        one_line(done.stderr or done.stdout),
        f"kubectl --as=alice patch rolebinding {name}-trainer",
    )
    done = sc.kubectl(BOB, "delete", "job", f"{name}-trainer", "-n", TEAM_A)
    sc.case(
        "job-deleted-by-ftj-only-tenant",
        BOB,
        "refused (bob may use FineTuneJobs only)",
        done.returncode != 0,
        one_line(done.stderr or done.stdout),
        f"kubectl --as=bob delete job {name}-trainer",
    )
    # alice suspends the Job behind the FineTuneJob's back: the operator puts spec.suspend back
    sc.kubectl(
        ALICE, "patch", "job", f"{name}-trainer", "-n", TEAM_A, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    status = sc.phase(name, *FINAL, timeout=90)
    sc.case(
        "job-suspended-behind-the-ftj",
        ALICE,
        "the operator un-suspends it; the run ends Succeeded",
        status.get("phase") == "Succeeded",
        _status_line(status),
        f'kubectl patch job {name}-trainer -p \'{{"spec":{{"suspend":true}}}}\' (Running)',
    )
    env.delete_ftj(TEAM_A, name)
    # the Job's TTL lowered to 0 by a tenant: the result may go with the pod; the status must say what happened
    name = "u-job-ttl"
    sc.create(name, duration="6s", loss=0.8)
    sc.phase(name, "Running", timeout=40)
    sc.kubectl(
        ALICE,
        "patch",
        "job",
        f"{name}-trainer",
        "-n",
        TEAM_A,
        "--type=merge",
        "-p",
        '{"spec":{"ttlSecondsAfterFinished":0}}',
    )
    status = sc.phase(name, *FINAL, timeout=90)
    truthful = (
        status.get("phase") == "Succeeded"
        and status.get("metrics") == {"evalLoss": 0.8}
        or status.get("reason") in ("JobDeleted", "ResultMissing")
    )
    sc.case(
        "job-ttl-zeroed-by-tenant",
        ALICE,
        "Succeeded with metrics, or a failure saying the Job/pod went away",
        truthful,
        _status_line(status),
        f"kubectl patch job {name}-trainer ttlSecondsAfterFinished=0 (Running)",
    )
    env.delete_ftj(TEAM_A, name)
    # the Job's label removed: the operator must not lose track of (or duplicate) the run
    name = "u-job-relabel"
    sc.create(name, duration="10s", loss=0.9)
    sc.phase(name, "Running", timeout=40)
    sc.kubectl(ALICE, "label", "job", f"{name}-trainer", "-n", TEAM_A, "finetune.dev/finetunejob-")
    status = sc.phase(name, *FINAL, timeout=60)
    jobs = env.batch.list_namespaced_job(TEAM_A, field_selector=f"metadata.name={name}-trainer").items
    running = bool(jobs) and not jobs[0].status.completion_time and not jobs[0].spec.suspend
    ok = status.get("phase") == "Succeeded" or (
        status.get("phase") == "Failed" and "finetune.dev/finetunejob" in (status.get("message") or "") and not running
    )
    sc.case(
        "job-label-removed",
        ALICE,
        "the run is still followed (Succeeded), or a failure naming the label",
        ok,
        f"{_status_line(status)}; the Job still exists: {bool(jobs)}, still running: {running}",
        f"kubectl label job {name}-trainer finetune.dev/finetunejob- (Running)",
    )
    env.delete_ftj(TEAM_A, name)
    # the pod's label removed: the Job controller orphans it and starts another one
    name = "u-pod-relabel"
    sc.create(name, duration="8s", loss=0.95)
    status = sc.phase(name, "Running", timeout=40)
    sc.kubectl(ALICE, "label", "pod", status.get("podName", "?"), "-n", TEAM_A, "finetune.dev/finetunejob-")
    status = sc.phase(name, *FINAL, timeout=90)
    pod_left = env.core.list_namespaced_pod(TEAM_A, label_selector=f"job-name={name}-trainer").items
    truthful = status.get("phase") == "Succeeded" or (
        status.get("phase") == "Failed" and "label" in (status.get("message") or "").replace(name, "")
    )
    sc.case(
        "pod-label-removed",
        ALICE,
        "Succeeded (from the Job's pod) or a failure saying what happened",
        GOOD if truthful else (POOR if status.get("phase") == "Failed" else WRONG),
        f"{_status_line(status)}; the relabelled pod still exists: {[p.status.phase for p in pod_left]}",
        "kubectl label pod <status.podName> finetune.dev/finetunejob- (Running)",
    )
    env.delete_ftj(TEAM_A, name)
    return sc.cases


def u_decoys(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    labels = {"finetune.dev/finetunejob": "u-decoyed", "app.kubernetes.io/component": "trainer"}
    decoy = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "decoy", "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels, "annotations": sim(termination_message=success(0.001))},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "decoy"}]},
            },
        },
    }
    sc.kubectl(ALICE, "create", "-n", TEAM_A, "-f", "-", input=json.dumps(decoy))
    wait(lambda: (env.batch.read_namespaced_job("decoy", TEAM_A).status.succeeded or 0) >= 1, 40)
    sc.create("u-decoyed", duration="3s", loss=0.5, actor=BOB)
    status = sc.phase("u-decoyed", *FINAL, timeout=60)
    sc.case(
        "decoy-job-with-our-labels",
        ALICE,
        "ignored: the run's own Job decides (evalLoss 0.5, not 0.001)",
        status.get("phase") == "Succeeded"
        and status.get("metrics") == {"evalLoss": 0.5}
        and status.get("jobName") == "u-decoyed-trainer",
        _status_line(status),
        "a Complete Job labelled finetune.dev/finetunejob=u-decoyed with a forged summary, then the FineTuneJob",
    )
    env.delete_ftj(TEAM_A, "u-decoyed")
    env.run("delete", "job", "decoy", "-n", TEAM_A, "--wait=false")
    # a pod claiming to be the run's: labels + a controller reference to the run's Job
    name = "u-forged-pod"
    failed = summary_json(outcome="failed", reason="TrainerError", message="boom")
    sc.create(
        name,
        duration="20s",
        actor=BOB,
        spec={"podAnnotations": sim(duration="20s", exit_code="1", termination_message=failed)},
    )
    sc.phase(name, "Running", timeout=40)
    job = sc.job(name)
    forged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-forged",
            "labels": {
                "finetune.dev/finetunejob": name,
                "app.kubernetes.io/component": "trainer",
                "batch.kubernetes.io/controller-uid": job.metadata.uid,
                "batch.kubernetes.io/job-name": job.metadata.name,
                "controller-uid": job.metadata.uid,
                "job-name": job.metadata.name,
            },
            "annotations": sim(duration="1s", termination_message=success(0.001)),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job.metadata.name,
                    "uid": job.metadata.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "forger"}]},
    }
    made = sc.kubectl(ALICE, "create", "-n", TEAM_A, "-f", "-", input=json.dumps(forged))
    status = sc.phase(name, *FINAL, timeout=60)
    forged_win = status.get("phase") == "Succeeded" and (status.get("metrics") or {}).get("evalLoss") == 0.001
    sc.case(
        "forged-pod-owned-by-the-runs-job",
        ALICE,
        "the run's real pod decides (it exits 1: Failed/TrainerError), not a pod another tenant made",
        not forged_win and status.get("phase") == "Failed",
        f"forged pod created: {made.returncode == 0}; {_status_line(status)}",
        f"kubectl --as=alice create pod {name}-forged with the Job's labels, a controller ownerReference to "
        f"{name}-trainer and a succeeded summary, while bob's run is Running (it will exit 1)",
    )
    env.delete_ftj(TEAM_A, name)
    # a trainer (a custom image) that exits 1 but writes a "succeeded" summary
    name = "u-contradiction"
    sc.create(name, spec={"podAnnotations": sim(exit_code="1")}, loss=0.66)
    status = sc.phase(name, *FINAL, timeout=60)
    message = status.get("message") or ""
    ok = status.get("phase") == "Failed" and not message.lstrip().startswith("{") and not status.get("metrics")
    sc.case(
        "exit-code-contradicts-summary",
        ALICE,
        "Failed, with a readable message (the exit code wins) and no metrics of a run that failed",
        ok,
        _status_line(status),
        "a trainer pod exiting 1 whose termination message is a 'succeeded' TrainerSummary",
        bad=POOR,
    )
    env.delete_ftj(TEAM_A, name)
    return sc.cases


def u_precreated(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    # a ConfigMap of the name <name>-config
    sc.kubectl(ALICE, "create", "configmap", "u-app-config", "-n", TEAM_A, "--from-literal=db=prod")
    sc.create("u-app", actor=BOB)
    status = sc.phase("u-app", *FINAL, timeout=40)
    cm = env.core.read_namespaced_config_map("u-app-config", TEAM_A)
    untouched = cm.data == {"db": "prod"} and not cm.metadata.owner_references
    env.delete_ftj(TEAM_A, "u-app")
    time.sleep(2)
    still = env.core.list_namespaced_config_map(TEAM_A, field_selector="metadata.name=u-app-config").items
    sc.case(
        "precreated-configmap",
        BOB,
        "Failed/NameConflict naming it; the ConfigMap untouched, kept after delete",
        status.get("reason") == "NameConflict"
        and "ConfigMap u-app-config" in (status.get("message") or "")
        and untouched
        and bool(still),
        f"{_status_line(status)}; untouched={untouched}; kept={bool(still)}",
        "kubectl create configmap u-app-config; then FineTuneJob u-app",
    )
    # a privileged ServiceAccount of the name <name>-trainer
    env.run("create", "serviceaccount", "u-ci-trainer", "-n", TEAM_A)
    env.run(
        "create",
        "rolebinding",
        "u-ci-admin",
        "--clusterrole=admin",
        f"--serviceaccount={TEAM_A}:u-ci-trainer",
        "-n",
        TEAM_A,
    )
    sc.create("u-ci", actor=BOB)
    status = sc.phase("u-ci", *FINAL, timeout=40)
    time.sleep(2)
    as_ci = [
        p.metadata.name
        for p in env.core.list_namespaced_pod(TEAM_A).items
        if p.spec.service_account_name == "u-ci-trainer"
    ]
    sa = env.core.read_namespaced_service_account("u-ci-trainer", TEAM_A)
    ok = status.get("reason") == "NameConflict" and not as_ci and not sa.metadata.owner_references
    sc.case(
        "precreated-privileged-serviceaccount",
        BOB,
        "Failed/NameConflict; no pod runs as it; not adopted",
        GOOD if ok else (SECURITY if as_ci or sa.metadata.owner_references else WRONG),
        f"{_status_line(status)}; pods as u-ci-trainer={as_ci}",
        "admin: sa u-ci-trainer bound to admin; bob: FineTuneJob u-ci",
    )
    # a RoleBinding of the name <name>-trainer
    env.run(
        "create",
        "rolebinding",
        "u-rb-trainer",
        "--clusterrole=view",
        f"--serviceaccount={TEAM_A}:default",
        "-n",
        TEAM_A,
    )
    sc.create("u-rb", actor=BOB)
    status = sc.phase("u-rb", *FINAL, timeout=40)
    rb = env.run("get", "rolebinding", "u-rb-trainer", "-n", TEAM_A, "-o", "json")
    rb_obj = json.loads(rb.stdout) if rb.returncode == 0 else {}
    ok = (
        status.get("reason") == "NameConflict"
        and rb_obj.get("roleRef", {}).get("name") == "view"
        and not rb_obj.get("metadata", {}).get("ownerReferences")
    )
    sc.case(
        "precreated-rolebinding",
        BOB,
        "Failed/NameConflict naming the RoleBinding; it stays as it was",
        ok,
        _status_line(status),
        "admin: rolebinding u-rb-trainer; bob: FineTuneJob u-rb",
    )
    # a Job of the name <name>-trainer
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "u-job-trainer"},
        "spec": {
            "suspend": True,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "busybox"}]}},
        },
    }
    sc.kubectl(ALICE, "create", "-n", TEAM_A, "-f", "-", input=json.dumps(job))
    sc.create("u-job", actor=BOB)
    status = sc.phase("u-job", *FINAL, timeout=40)
    theirs = env.batch.read_namespaced_job("u-job-trainer", TEAM_A)
    ok = (
        status.get("reason") == "NameConflict"
        and "Job u-job-trainer" in (status.get("message") or "")
        and theirs.spec.suspend
        and not theirs.metadata.owner_references
    )
    sc.case(
        "precreated-job",
        BOB,
        "Failed/NameConflict naming the Job; it is not touched",
        ok,
        _status_line(status),
        "alice: job u-job-trainer (suspended); bob: FineTuneJob u-job",
    )
    for name in ("u-ci", "u-rb", "u-job"):
        env.delete_ftj(TEAM_A, name)
    return sc.cases


def u_recreate(env: Env) -> list[Case]:
    sc = Scenario(env, "updates")
    name = "u-again"
    sc.create(name, loss=1.11)
    sc.phase(name, *FINAL, timeout=60)
    env.delete_ftj(TEAM_A, name)
    wait(lambda: env.ftj(TEAM_A, name) is None, 30)
    created = sc.create(name, duration="4s", loss=2.22)
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        seen.append(env.status(TEAM_A, name))
        return seen[-1].get("phase") in FINAL

    wait(done, 90, 0.3)
    status = seen[-1]
    inherited = [
        s
        for s in seen
        if (s.get("metrics") or {}).get("evalLoss") == 1.11
        or s.get("phase") == "Succeeded"
        and (s.get("metrics") or {}).get("evalLoss") != 2.22
    ]
    jobs = env.jobs(TEAM_A, name)
    owners = [r.uid for j in jobs for r in (j.metadata.owner_references or [])]
    sc.case(
        "delete-and-recreate-same-name",
        ALICE,
        "a new run: never the old run's result; its Job owned by the new uid",
        status.get("metrics") == {"evalLoss": 2.22} and not inherited and owners == [created["metadata"]["uid"]],
        f"{_status_line(status)}; statuses seen with the old result: {len(inherited)}",
        "FineTuneJob u-again (evalLoss 1.11) Succeeded, deleted, re-created (evalLoss 2.22)",
    )
    sc.create("u-deleted-running", duration="90s")
    sc.phase("u-deleted-running", "Running", timeout=40)
    env.delete_ftj(TEAM_A, "u-deleted-running")
    gone = wait(lambda: sc.children_gone("u-deleted-running"), 60)
    sc.case(
        "delete-running-run",
        ALICE,
        "Job, pod, ConfigMap, ServiceAccount removed with it",
        bool(gone),
        f"children gone: {bool(gone)}",
        "kubectl delete ftj u-deleted-running (Running)",
    )
    env.delete_ftj(TEAM_A, name)
    return sc.cases


def run_parallel(results: Results, category: str, scenarios: list[Callable[[], list[Case]]], workers: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in concurrent.futures.as_completed([pool.submit(_guarded, category, s) for s in scenarios]):
            for c in future.result():
                results.add(c)


def run_updates(env: Env, results: Results) -> None:
    scenarios = [
        u_immutable,
        u_suspend_resume,
        u_created_suspended,
        u_ttl,
        u_children_deleted,
        u_children_patched,
        u_decoys,
        u_precreated,
        u_recreate,
    ]
    run_parallel(results, "updates", [_bind(s, env) for s in scenarios], 5)


def _bind(scenario: Callable[[Env], list[Case]], env: Env) -> Callable[[], list[Case]]:
    def bound() -> list[Case]:
        return scenario(env)

    bound.__name__ = scenario.__name__
    return bound


# --- multi-tenancy ---------------------------------------------------------------------------------


def _refused(done: subprocess.CompletedProcess[str], *fragments: str) -> bool:
    text = done.stderr + done.stdout
    return done.returncode != 0 and all(f in text for f in fragments)


def t_requests(env: Env) -> list[Case]:
    """What a tenant may hand a trainer: Secrets, images, priority classes, tolerations."""
    sc = Scenario(env, "tenancy")
    token = {"source": "hf://org/model", "tokenSecretRef": {"name": "hub-token", "key": "token"}}

    def attempt(
        label: str,
        actor: str,
        spec: dict[str, Any],
        allowed: bool,
        fragments: tuple[str, ...] = (),
        check: Callable[[str], tuple[bool, str]] | None = None,
        security: bool = True,
    ) -> None:
        name = f"t-{label}"
        body = ftj_body(name, spec)
        done = env.apply(actor, TEAM_A, body, "create")
        msg = one_line(done.stderr or done.stdout)
        repro = repro_manifest(actor, TEAM_A, {"metadata": body["metadata"], "spec": spec}, "create")
        if not allowed:
            verdict = (
                GOOD
                if _refused(done, *fragments)
                else (POOR if done.returncode != 0 else (SECURITY if security else WRONG))
            )
            sc.case(label, actor, f"refused: {' & '.join(fragments)}", verdict, msg, repro)
            return
        if done.returncode != 0:
            sc.case(label, actor, "allowed, and runs", WRONG, msg, repro)
            return
        status = sc.phase(name, *FINAL, timeout=60)
        ok, detail = check(name) if check else (True, "")
        sc.case(
            label,
            actor,
            "allowed, and runs",
            status.get("phase") == "Succeeded" and ok,
            f"{_status_line(status)} {detail}".strip(),
            repro,
        )

    def pod_field(getter: Callable[[Any], Any], want: Any) -> Callable[[str], tuple[bool, str]]:
        def check(name: str) -> tuple[bool, str]:
            pods = env.pods(TEAM_A, name)
            got = getter(pods[0]) if pods else None
            return got == want, f"; pod: {got}"

        return check

    def secret_env(name: str) -> tuple[bool, str]:
        job = sc.job(name)
        refs = (
            [
                e.value_from.secret_key_ref.name
                for e in job.spec.template.spec.containers[0].env or []
                if e.value_from and e.value_from.secret_key_ref
            ]
            if job
            else []
        )
        return refs == ["hub-token"], f"; HF_TOKEN from Secret {refs}"

    attempt(
        "bob-secret-he-cannot-read",
        BOB,
        {"model": token},
        False,
        (f"{BOB} may not get Secret hub-token in namespace {TEAM_A}",),
    )
    attempt("alice-secret-she-can-read", ALICE, {"model": token}, True, check=secret_env)
    attempt(
        "bob-custom-image",
        BOB,
        {"image": "registry.evil/miner:1"},
        False,
        ("spec.image: registry.evil/miner:1 is not among the allowed trainer images", f"{BOB} may not create pods"),
    )
    attempt(
        "alice-custom-image",
        ALICE,
        {"image": "registry.evil/miner:1"},
        True,
        check=pod_field(lambda p: p.spec.containers[0].image, "registry.evil/miner:1"),
    )
    attempt(
        "bob-allowlisted-image",
        BOB,
        {"image": "registry.example/ml/trainer:2"},
        True,
        check=pod_field(lambda p: p.spec.containers[0].image, "registry.example/ml/trainer:2"),
    )
    attempt(
        "bob-lookalike-image",
        BOB,
        {"image": "ghcr.io/finetune-operator/trainer-evil:1"},
        False,
        ("is not among the allowed trainer images",),
    )
    attempt(
        "bob-system-priority",
        BOB,
        {"scheduling": {"priorityClassName": "system-node-critical"}},
        False,
        ("spec.scheduling.priorityClassName: system-node-critical is not allowed",),
    )
    attempt(
        "admin-system-priority",
        "admin",
        {"scheduling": {"priorityClassName": "system-cluster-critical"}},
        False,
        ("spec.scheduling.priorityClassName: system-cluster-critical is not allowed",),
    )
    attempt(
        "bob-allowlisted-priority",
        BOB,
        {"scheduling": {"priorityClassName": "ml-batch"}},
        True,
        check=pod_field(lambda p: p.spec.priority_class_name, "ml-batch"),
    )
    attempt(
        "bob-tolerate-everything",
        BOB,
        {"scheduling": {"tolerations": [{"operator": "Exists"}]}},
        False,
        ('spec.scheduling.tolerations: key "" (every taint) is not allowed',),
    )
    attempt(
        "bob-control-plane-toleration",
        BOB,
        {
            "scheduling": {
                "tolerations": [
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
                ]
            }
        },
        False,
        ("key node-role.kubernetes.io/control-plane is not allowed",),
    )
    attempt(
        "bob-gpu-toleration",
        BOB,
        {"scheduling": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}},
        True,
    )
    return sc.cases


def t_access(env: Env) -> list[Case]:
    """What tenants can read or create directly."""
    sc = Scenario(env, "tenancy")
    checks = [
        ("bob-reads-secret", BOB, ("get", "secret", "hub-token", "-n", TEAM_A), 'cannot get resource "secrets"'),
        (
            "bob-creates-pod",
            BOB,
            ("run", "x", "--image=busybox", "-n", TEAM_A, "--restart=Never"),
            'cannot create resource "pods"',
        ),
        (
            "bob-binds-a-role",
            BOB,
            ("create", "rolebinding", "bob-admin", "--clusterrole=admin", f"--user={BOB}", "-n", TEAM_A),
            'cannot create resource "rolebindings"',
        ),
        (
            "bob-patches-status",
            BOB,
            _patch("t-bob-target", {"status": {"phase": "Succeeded"}}, "--subresource=status"),
            'cannot patch resource "finetunejobs/status"',
        ),
        (
            "alice-binds-herself-admin",
            ALICE,
            ("create", "rolebinding", "alice-admin", "--clusterrole=admin", f"--user={ALICE}", "-n", TEAM_A),
            'cannot create resource "rolebindings"',
        ),
        (
            "alice-reads-other-namespace-secret",
            ALICE,
            ("get", "secret", "prod-db", "-n", TEAM_B),
            'cannot get resource "secrets"',
        ),
        ("alice-lists-other-namespace-ftjs", ALICE, ("get", "ftj", "-n", TEAM_B), "cannot list resource"),
        ("carol-creates-ftj-in-team-a", CAROL, ("create", "-n", TEAM_A, "-f", "-"), "cannot create resource"),
        ("carol-reads-team-a-claims", CAROL, ("get", "pvc", "-n", TEAM_A), "cannot list resource"),
    ]
    body = json.dumps(ftj_body("t-carol"))
    sc.create("t-bob-target", {"suspend": True}, actor=BOB)
    for label, actor, args, fragment in checks:
        done = sc.kubectl(actor, *args, input=body if "-f" in args else None)
        sc.case(
            label,
            actor,
            f"forbidden ({fragment})",
            GOOD if _refused(done, fragment) else (POOR if done.returncode != 0 else SECURITY),
            one_line(done.stderr or done.stdout),
            f"kubectl --as={actor} {' '.join(args)}",
        )
    env.delete_ftj(TEAM_A, "t-bob-target")
    # claims of another namespace, by name
    for label, spec in (
        ("dataset-from-other-namespace-claim", {"dataset": {"source": "pvc://prod-data/train.jsonl"}}),
        ("output-to-other-namespace-claim", {"output": {"pvc": "prod-data"}}),
    ):
        name = f"t-{label}"[:52]
        env.apply(BOB, TEAM_A, ftj_body(name, spec), "create")
        status = sc.phase(name, "Failed", "Succeeded", "Pending", timeout=40, reason="Unschedulable")
        pods = env.pods(TEAM_A, name)
        running = [p for p in pods if p.spec.node_name]
        ok = status.get("reason") == "Unschedulable" and "prod-data" in (status.get("message") or "") and not running
        sc.case(
            label,
            BOB,
            "the pod never starts; Pending/Unschedulable naming the missing claim prod-data",
            GOOD if ok else (SECURITY if running else POOR),
            _status_line(status),
            repro_manifest(BOB, TEAM_A, {"spec": spec}, "create") + f" (claim prod-data exists only in {TEAM_B})",
        )
        env.delete_ftj(TEAM_A, name)
    return sc.cases


def t_trainer_token(env: Env) -> list[Case]:
    """A trainer's token (in its pod, which runs the tenant's image) used for more than progress."""
    sc = Scenario(env, "tenancy")
    sc.create("t-victim", duration="120s", actor=BOB)
    sc.create("t-attacker", duration="120s", actor=ALICE)
    sc.phase("t-victim", "Running", timeout=40)
    sc.phase("t-attacker", "Running", timeout=40)
    kc = service_account_kubeconfig(
        env.api, env.cluster.kubeconfig, TEAM_A, "t-attacker-trainer", env.workdir / "t-attacker-trainer.kubeconfig"
    )
    api = client.ApiClient(configuration=_config_from(kc))
    progress = {"stage": "training", "step": 3, "totalSteps": 10, "percent": 30}
    try:
        own = patch_status(api, TEAM_A, "t-attacker", {"progress": progress})
        sc.case(
            "trainer-reports-own-progress",
            "trainer",
            "allowed",
            own is None,
            own or "accepted",
            "PATCH finetunejobs/t-attacker/status {progress} with t-attacker-trainer's token",
        )
        for label, target, status in (
            ("trainer-forges-own-phase", "t-attacker", {"phase": "Succeeded"}),
            ("trainer-forges-own-metrics", "t-attacker", {"metrics": {"evalLoss": 0.0}}),
            ("trainer-forges-other-progress", "t-victim", {"progress": progress}),
            ("trainer-forges-other-phase", "t-victim", {"phase": "Failed", "reason": "TrainerError"}),
        ):
            message = patch_status(api, TEAM_A, target, status)
            after = env.status(TEAM_A, target)
            forged = any(after.get(k) == v for k, v in status.items() if k != "progress") or (
                "progress" in status and (after.get("progress") or {}).get("step") == 3 and target == "t-victim"
            )
            sc.case(
                label,
                "trainer",
                "refused by the status-integrity policy",
                GOOD if message and not forged else SECURITY,
                message or f"accepted; status now {_status_line(after)}",
                f"PATCH finetunejobs/{target}/status {json.dumps(status)} with t-attacker-trainer's token",
            )
    finally:
        api.close()
    for label, args, fragment in (
        ("trainer-reads-secret", ("get", "secret", "hub-token", "-n", TEAM_A), "forbidden"),
        ("trainer-lists-ftjs", ("get", "ftj", "-n", TEAM_A), "forbidden"),
        ("trainer-creates-pod", ("run", "y", "--image=busybox", "-n", TEAM_A), "forbidden"),
    ):
        done = env.run(*args, kubeconfig=kc)
        sc.case(
            label,
            "trainer",
            "forbidden",
            GOOD if _refused(done, fragment) else SECURITY,
            one_line(done.stderr or done.stdout),
            f"kubectl --kubeconfig=<t-attacker-trainer token> {' '.join(args)}",
        )
    # the token of a deleted run
    env.delete_ftj(TEAM_A, "t-attacker")
    sa_gone = wait(
        lambda: (
            not env.core.list_namespaced_service_account(
                TEAM_A, field_selector="metadata.name=t-attacker-trainer"
            ).items
        ),
        90,
    )
    done = env.run(
        "patch",
        "ftj",
        "t-victim",
        "-n",
        TEAM_A,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"progress": progress}}),
        kubeconfig=kc,
    )
    sc.case(
        "trainer-token-after-run-deleted",
        "trainer",
        "rejected (the ServiceAccount is gone)",
        GOOD if _refused(done, "Unauthorized") or _refused(done, "forbidden") else SECURITY,
        f"ServiceAccount gone: {bool(sa_gone)}; {one_line(done.stderr or done.stdout)}",
        "the t-attacker-trainer token after deleting FineTuneJob t-attacker",
    )
    env.delete_ftj(TEAM_A, "t-victim")
    return sc.cases


def raw_request(api: client.ApiClient, method: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """A JSON merge patch (or other request) as-is: (HTTP status, the server's message)."""
    request = api.param_serialize(
        method,
        path,
        body=body,
        auth_settings=["BearerToken"],
        header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
    )
    response = api.call_api(*request)
    response.read()
    try:
        message = json.loads(response.data).get("message", "")
    except ValueError:
        message = response.data.decode(errors="replace")[:300]
    return response.status, one_line(message)


def _config_from(kubeconfig: Path) -> client.Configuration:
    from kubernetes import config as kconfig

    cfg = client.Configuration()
    kconfig.load_kube_config(str(kubeconfig), client_configuration=cfg)
    return cfg


def t_operator_token(env: Env) -> list[Case]:
    """The operator's token (stolen, or the operator misused) outside what a run needs."""
    sc = Scenario(env, "tenancy")
    job = trainer_job("x-trainer")
    cm = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x-config"}})
    checks = [
        ("operator-job-in-kube-system", ("create", "-n", "kube-system", "-f", "-"), json.dumps(job), "never acts in"),
        ("operator-configmap-in-kube-system", ("create", "-n", "kube-system", "-f", "-"), cm, "never acts in"),
        (
            "operator-job-in-namespace-not-opted-in",
            ("create", "-n", CLOSED, "-f", "-"),
            json.dumps(job),
            "not opted in",
        ),
        ("operator-reads-secrets", ("get", "secrets", "-n", TEAM_A), None, 'cannot list resource "secrets"'),
        ("operator-reads-secrets-cluster-wide", ("get", "secrets", "-A"), None, 'cannot list resource "secrets"'),
        (
            "operator-binds-admin",
            (
                "create",
                "rolebinding",
                "y-trainer",
                "--clusterrole=admin",
                f"--serviceaccount={TEAM_A}:default",
                "-n",
                TEAM_A,
            ),
            None,
            "attempting to grant RBAC permissions not currently held",
        ),
        (
            "operator-creates-a-role",
            ("create", "role", "r", "--verb=get", "--resource=secrets", "-n", TEAM_A),
            None,
            'cannot create resource "roles"',
        ),
        (
            "operator-creates-a-real-pod",
            ("run", "z", "--image=busybox", "-n", TEAM_A, "--restart=Never"),
            None,
            "only as a server-side dry run",
        ),
        (
            "operator-job-as-foreign-serviceaccount",
            ("create", "-n", TEAM_A, "-f", "-"),
            json.dumps(trainer_job("w-trainer", serviceAccountName="default")),
            "serviceAccountName must be",
        ),
        (
            "operator-job-with-hostpath",
            ("create", "-n", TEAM_A, "-f", "-"),
            json.dumps(trainer_job("v-trainer", volumes=[{"name": "root", "hostPath": {"path": "/"}}])),
            "volumes may be configMap, emptyDir or persistentVolumeClaim only",
        ),
        ("operator-impersonates", ("get", "pods", "-n", TEAM_A, "--as=system:admin"), None, "cannot impersonate"),
    ]
    sc.create("t-op-target", {"suspend": True})
    for label, args, stdin, fragment in checks:
        done = env.as_operator(*args, input=stdin)
        sc.case(
            label,
            "operator token",
            f"refused ({fragment})",
            GOOD if _refused(done, fragment) else (POOR if done.returncode != 0 else SECURITY),
            one_line(done.stderr or done.stdout),
            f"kubectl --kubeconfig=<operator token> {' '.join(args)}",
        )
    api = client.ApiClient(configuration=_config_from(env.operator_kubeconfig))
    try:
        code, message = raw_request(
            api,
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{TEAM_A}/{PLURAL}/t-op-target",
            {"spec": {"image": "registry.evil/x:1"}},
        )
    finally:
        api.close()
    image = ((env.ftj(TEAM_A, "t-op-target") or {}).get("spec") or {}).get("image")
    sc.case(
        "operator-forges-spec",
        "operator token",
        "refused (the spec is immutable)",
        GOOD if code == 422 and "immutable" in message else (SECURITY if image else POOR),
        f"{code}: {message}",
        "PATCH finetunejobs/t-op-target {spec: {image: registry.evil/x:1}} with the operator's token",
    )
    done = env.as_operator("get", "configmap", "kube-root-ca.crt", "-n", "kube-system", "-o", "name")
    sc.case(
        "operator-reads-kube-system-configmap",
        "operator token",
        "no reads outside opted-in namespaces (operations.md documents that admission policies cannot confine "
        "reads; watch.namespaces does)",
        GOOD if done.returncode != 0 else WRONG,
        ("allowed: " + one_line(done.stdout)) if done.returncode == 0 else one_line(done.stderr),
        "kubectl --kubeconfig=<operator token> get configmap kube-root-ca.crt -n kube-system",
    )
    env.delete_ftj(TEAM_A, "t-op-target")
    # FineTuneJobs where the operator may not act: a status that says why
    for label, ns, fragment in (
        ("ftj-in-namespace-not-opted-in", CLOSED, "finetune.dev/enabled=true"),
        ("ftj-in-kube-system", "kube-system", "never acts in"),
    ):
        name = f"t-{label}"[:52]
        done = env.apply("admin", ns, ftj_body(name), "create")
        if done.returncode != 0:
            sc.case(
                label,
                "admin",
                "Pending/NotPermitted quoting the policy",
                GOOD if "kube-system" in ns else WRONG,
                one_line(done.stderr),
                f"kubectl -n {ns} create FineTuneJob",
            )
            continue
        status = env.wait_phase(ns, name, ("Pending", "Failed"), 40, reason="NotPermitted")
        made = env.batch.list_namespaced_job(ns, label_selector=f"finetune.dev/finetunejob={name}").items
        ok = status.get("reason") == "NotPermitted" and fragment in (status.get("message") or "") and not made
        sc.case(
            label,
            "admin",
            f"Pending/NotPermitted quoting the policy ({fragment}); nothing created",
            GOOD if ok else (SECURITY if made else POOR),
            _status_line(status),
            f"kubectl -n {ns} create -f <a valid FineTuneJob>",
        )
        env.delete_ftj(ns, name)
    # status integrity: cluster admins included
    sc.create("t-status", duration="60s", actor=BOB)
    sc.phase("t-status", "Running", timeout=40)
    done = env.run(*_patch("t-status", {"status": {"phase": "Failed", "reason": "Forged"}}, "--subresource=status"))
    sc.case(
        "admin-forges-status",
        "admin",
        "refused by the status-integrity policy",
        GOOD if _refused(done, "may not write the status") else WRONG,
        one_line(done.stderr or done.stdout),
        'kubectl patch ftj t-status --subresource=status -p \'{"status":{"phase":"Failed"}}\'',
    )
    env.delete_ftj(TEAM_A, "t-status")
    return sc.cases


def run_tenancy(env: Env, results: Results) -> None:
    provision_claims(env.kubectl, TEAM_B, ("prod-data", "prod-models"))
    run_parallel(
        results, "tenancy", [_bind(s, env) for s in (t_requests, t_access, t_trainer_token, t_operator_token)], 4
    )


# --- operator kills --------------------------------------------------------------------------------

KILL_NS = TEAM_B


def _create_many(
    env: Env, ns: str, names: list[str], spec: dict[str, Any] | None = None, duration: str = "2s", workers: int = 8
) -> float:
    """Create FineTuneJobs concurrently (each with its own evalLoss, by index); returns the seconds taken."""
    t0 = time.monotonic()

    def make(item: tuple[int, str]) -> None:
        i, name = item
        env.create_ftj(ns, ftj_body(name, spec, duration, loss=round(0.001 * (i + 1), 6)))

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(make, enumerate(names)))
    return time.monotonic() - t0


def _outcomes(env: Env, ns: str, names: list[str], spec_phase: str = "Succeeded") -> dict[str, Any]:
    """Per FineTuneJob: phase, whether its metrics are its own, how many Jobs it has and whose they are."""
    listed = env.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
    items = {o["metadata"]["name"]: o for o in listed}
    jobs: dict[str, list[Any]] = {}
    for j in env.batch.list_namespaced_job(ns, label_selector="app.kubernetes.io/component=trainer").items:
        jobs.setdefault(j.metadata.labels.get("finetune.dev/finetunejob"), []).append(j)
    out = {"missing": [], "wrong_phase": [], "wrong_metrics": [], "duplicate_jobs": [], "foreign_owner": []}
    for i, name in enumerate(names):
        obj = items.get(name)
        if obj is None:
            out["missing"].append(name)
            continue
        status = obj.get("status") or {}
        if status.get("phase") != spec_phase:
            out["wrong_phase"].append(f"{name}:{status.get('phase')}/{status.get('reason')}")
        if spec_phase == "Succeeded" and status.get("metrics") != {"evalLoss": round(0.001 * (i + 1), 6)}:
            out["wrong_metrics"].append(f"{name}:{status.get('metrics')}")
        mine = jobs.get(name, [])
        if len(mine) > 1:
            out["duplicate_jobs"].append(f"{name}:{len(mine)}")
        if any(r.uid != obj["metadata"]["uid"] for j in mine for r in j.metadata.owner_references or []):
            out["foreign_owner"].append(name)
    return out


def _all_done(env: Env, ns: str, names: list[str], phase: str = "Succeeded", timeout: float = 150) -> dict[str, Any]:
    result: dict[str, Any] = {}

    def check() -> bool:
        nonlocal result
        result = _outcomes(env, ns, names, phase)
        return not (result["missing"] or result["wrong_phase"])

    wait(check, timeout, 1.0)
    return result


def _clean(result: dict[str, Any]) -> bool:
    return not any(result.values())


def _summary(result: dict[str, Any]) -> str:
    bad = {k: v[:5] + ([f"+{len(v) - 5}"] if len(v) > 5 else []) for k, v in result.items() if v}
    return f"problems: {bad}" if bad else "every run Succeeded with its own metrics and exactly one Job of its own"


def _delete_all(env: Env, ns: str, names: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: env.delete_ftj(ns, n), names))


def k_burst(env: Env, tag: str, kills: list[float], n: int = 20) -> Case:
    """SIGKILL the operator ``kills`` seconds (each after the previous restart) into a burst of ``n``."""
    t0 = time.monotonic()
    op = env.ensure_one_operator()
    names = [f"k-{tag}-{i}" for i in range(n)]
    creator = threading.Thread(target=_create_many, args=(env, KILL_NS, names))
    creator.start()
    jobs_at_kill = []
    for delay in kills:
        time.sleep(delay)
        trainer_jobs = env.batch.list_namespaced_job(KILL_NS, label_selector="finetune.dev/finetunejob").items
        jobs_at_kill.append(sum(j.metadata.labels["finetune.dev/finetunejob"] in names for j in trainer_jobs))
        env.kill_operator(op)
        time.sleep(0.5)
        op = env.start_operator()
    creator.join()
    result = _all_done(env, KILL_NS, names)
    _delete_all(env, KILL_NS, names)
    return Case(
        "kills",
        f"sigkill-{tag}",
        "admin",
        f"{n} runs: all Succeeded with their own metrics, one Job each",
        GOOD if _clean(result) else WRONG,
        f"killed at {kills}s (this burst's Jobs at each kill: {jobs_at_kill}); {_summary(result)}",
        f"create {n} FineTuneJobs at once; kill -9 the operator {kills}s in; restart it",
        time.monotonic() - t0,
    )


def k_finishing(env: Env) -> Case:
    t0 = time.monotonic()
    op = env.ensure_one_operator()
    names = [f"k-finish-{i}" for i in range(20)]
    _create_many(env, KILL_NS, names, duration="4s")
    done = wait(
        lambda: (
            sum(
                1
                for p in env.core.list_namespaced_pod(
                    KILL_NS, label_selector="app.kubernetes.io/component=trainer"
                ).items
                if p.status.phase == "Succeeded"
            )
            >= 3
        ),
        60,
        0.2,
    )
    env.kill_operator(op)
    time.sleep(4)  # the rest finish while no operator runs
    env.start_operator()
    result = _all_done(env, KILL_NS, names)
    _delete_all(env, KILL_NS, names)
    return Case(
        "kills",
        "sigkill-while-runs-finish",
        "admin",
        "all Succeeded with their own metrics",
        GOOD if _clean(result) and done else WRONG,
        _summary(result),
        "20 runs of 4 s; kill -9 the operator once 3 pods have completed; restart 4 s later",
        time.monotonic() - t0,
    )


def k_down(env: Env) -> list[Case]:
    t0 = time.monotonic()
    cases = []
    env.kill_operator(env.ensure_one_operator())
    names = [f"k-down-{i}" for i in range(10)]
    _create_many(env, KILL_NS, names)
    env.start_operator()
    result = _all_done(env, KILL_NS, names)
    _delete_all(env, KILL_NS, names)
    cases.append(
        Case(
            "kills",
            "created-while-operator-down",
            "admin",
            "all Succeeded once it is back",
            GOOD if _clean(result) else WRONG,
            _summary(result),
            "kill -9 the operator; create 10 FineTuneJobs; start it",
            time.monotonic() - t0,
        )
    )
    t0 = time.monotonic()
    names = [f"k-susp-{i}" for i in range(3)]
    _create_many(env, KILL_NS, names, spec={"suspend": True})
    _all_done(env, KILL_NS, names, "Suspended", 60)
    env.kill_operator(env.ensure_one_operator())
    for name in names:
        env.patch_ftj(KILL_NS, name, {"spec": {"suspend": False}})
    env.start_operator()
    result = _all_done(env, KILL_NS, names)
    _delete_all(env, KILL_NS, names)
    cases.append(
        Case(
            "kills",
            "resumed-while-operator-down",
            "admin",
            "the Jobs resume; all Succeeded",
            GOOD if _clean(result) else WRONG,
            _summary(result),
            "3 suspended runs; kill -9 the operator; suspend: false; start it",
            time.monotonic() - t0,
        )
    )
    return cases


def k_retention(env: Env) -> Case:
    t0 = time.monotonic()
    env.ensure_one_operator()
    name = "k-retention"
    env.create_ftj(KILL_NS, ftj_body(name, {"output": {"retention": "Delete"}}))
    env.wait_phase(KILL_NS, name, FINAL, 60)
    finalizers = (env.ftj(KILL_NS, name) or {}).get("metadata", {}).get("finalizers") or []
    has_finalizer = "finetune.dev/cleanup" in finalizers
    env.delete_ftj(KILL_NS, name)
    time.sleep(0.3)
    env.kill_operator(env.ensure_one_operator())
    time.sleep(2)
    env.start_operator()
    gone = wait(lambda: env.ftj(KILL_NS, name) is None, 90)
    events = env.events(KILL_NS, name)
    cleanup = [e for e in events if e.split(":")[0] in ("OutputDeleted", "OutputKept", "OutputCleanupFailed")]
    return Case(
        "kills",
        "sigkill-during-retention-delete",
        "admin",
        "after a restart the cleanup finishes, the finalizer is released, the FineTuneJob goes",
        GOOD if gone and has_finalizer and cleanup else WRONG,
        f"finalizer set: {has_finalizer}; deleted: {bool(gone)}; cleanup events: {cleanup}",
        "retention: Delete run, Succeeded; kubectl delete ftj; kill -9 the operator 0.3 s later; restart",
        time.monotonic() - t0,
    )


def k_replicas(env: Env) -> list[Case]:
    cases = []
    t0 = time.monotonic()
    env.ensure_one_operator()
    env.start_operator()
    leader = env.leader()
    names = [f"k-ha-{i}" for i in range(20)]
    creator = threading.Thread(target=_create_many, args=(env, KILL_NS, names))
    creator.start()
    time.sleep(0.7)
    env.kill_operator(leader)
    killed = time.monotonic()
    successor = env.leader(40)
    takeover = time.monotonic() - killed
    creator.join()
    result = _all_done(env, KILL_NS, names)
    _delete_all(env, KILL_NS, names)
    cases.append(
        Case(
            "kills",
            "two-replicas-leader-sigkill",
            "admin",
            "the standby takes over after the lease (15 s, the chart's); all Succeeded, one Job each",
            GOOD if _clean(result) and successor else WRONG,
            f"new leader after {takeover:.1f}s; {_summary(result)}",
            "two operator replicas; 20 FineTuneJobs at once; kill -9 the leader 0.7 s in",
            time.monotonic() - t0,
        )
    )
    t0 = time.monotonic()
    env.start_operator()
    leader = env.leader()
    stopped = time.monotonic()
    env.stop_operator(leader)
    successor = env.leader(40)
    handover = time.monotonic() - stopped
    names = [f"k-term-{i}" for i in range(5)]
    _create_many(env, KILL_NS, names)
    result = _all_done(env, KILL_NS, names)
    _delete_all(env, KILL_NS, names)
    cases.append(
        Case(
            "kills",
            "two-replicas-leader-sigterm",
            "admin",
            "the lease is handed over at once (well under the 15 s lease); new runs Succeed",
            GOOD if _clean(result) and successor and handover < 4 else WRONG,
            f"new leader after {handover:.1f}s (SIGTERM, exit included); {_summary(result)}",
            "two replicas; SIGTERM the leader; create 5",
            time.monotonic() - t0,
        )
    )
    env.ensure_one_operator()
    return cases


def run_kills(env: Env, results: Results) -> None:
    for scenario in (
        lambda: [k_burst(env, "early", [0.3])],
        lambda: [k_burst(env, "mid", [2.0])],
        lambda: [k_burst(env, "thrice", [0.5, 1.5, 1.5])],
        lambda: [k_finishing(env)],
        lambda: k_down(env),
        lambda: [k_retention(env)],
        lambda: k_replicas(env),
    ):
        for c in _guarded("kills", scenario):
            results.add(c)


# --- load ------------------------------------------------------------------------------------------


class RssSampler:
    """Peak resident memory of a process, sampled every 0.5 s."""

    def __init__(self, pid: int):
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now_kb(self) -> int:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self.now_kb())
            time.sleep(0.5)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_kb / 1024, 1)


def _metric(op: OperatorProcess, name: str) -> float:
    """The sum of a metric's series (all label values) as the operator exports it now."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines() if line.startswith((name + " ", name + "{"))
    )


def _load_namespace(env: Env, ns: str) -> None:
    env.core.create_namespace({"metadata": {"name": ns, "labels": {"finetune.dev/enabled": "true"}}})
    env._wait_default_sa(ns)
    provision_claims(env.kubectl, ns)


def l_burst(env: Env, results: Results) -> None:
    ns = "load-burst"
    _load_namespace(env, ns)
    op = env.ensure_one_operator()
    rss = RssSampler(op.proc.pid)
    names = [f"burst-{i}" for i in range(100)]
    t0 = time.monotonic()
    created = _create_many(env, ns, names, duration="1s", workers=10)
    all_jobs = wait(lambda: len(env.batch.list_namespaced_job(ns).items) >= 100, 180, 0.5)
    jobs_s = time.monotonic() - t0
    result = _all_done(env, ns, names, timeout=240)
    done_s = time.monotonic() - t0
    peak = rss.stop()
    figures = {
        "created_s": round(created, 1),
        "all_jobs_s": round(jobs_s, 1),
        "all_succeeded_s": round(done_s, 1),
        "operator_rss_peak_mb": peak,
    }
    results.figures["burst_100"] = figures
    results.add(
        Case(
            "load",
            "burst-100",
            "admin",
            "100 Jobs, no duplicate, all Succeeded with their metrics",
            GOOD if all_jobs and _clean(result) else WRONG,
            f"{figures}; {_summary(result)}",
            "100 FineTuneJobs created at once (10 client threads), 1 s simulated runs",
            done_s,
        )
    )
    env.core.delete_namespace(ns)


def l_ttl_zero(env: Env, results: Results) -> None:
    ns = "load-ttl"
    _load_namespace(env, ns)
    env.ensure_one_operator()
    names = [f"ttl-{i}" for i in range(50)]
    t0 = time.monotonic()
    _create_many(env, ns, names, spec={"ttlSecondsAfterFinished": 0}, duration="1s", workers=10)
    result = _all_done(env, ns, names, timeout=180)
    gone = wait(lambda: not env.batch.list_namespaced_job(ns).items, 90, 1.0)
    result = _outcomes(env, ns, names)
    left = len(env.batch.list_namespaced_job(ns).items)
    lost = bool(result["wrong_phase"] or result["wrong_metrics"] or result["missing"])
    results.figures["ttl_zero_50"] = {"seconds": round(time.monotonic() - t0, 1), "jobs_left": left}
    results.add(
        Case(
            "load",
            "burst-50-ttl-0",
            "admin",
            "all Succeeded with their metrics, then every Job removed",
            LOST if lost else (GOOD if gone else WRONG),
            f"Jobs left: {left}; {_summary(result)}",
            "50 FineTuneJobs with ttlSecondsAfterFinished: 0 at once",
            time.monotonic() - t0,
        )
    )
    env.core.delete_namespace(ns)


def l_idle(env: Env, results: Results) -> None:
    ns = "load-idle"
    _load_namespace(env, ns)
    op = env.ensure_one_operator()
    rss = RssSampler(op.proc.pid)
    names = [f"idle-{i}" for i in range(1000)]
    t0 = time.monotonic()
    created = _create_many(env, ns, names, spec={"suspend": True}, workers=10)
    result = _all_done(env, ns, names, "Suspended", timeout=420)
    settled = time.monotonic() - t0
    jobs = len(env.batch.list_namespaced_job(ns).items)
    peak = rss.stop()
    writes_before = _metric(op, "finetune_status_writes_total")
    env.stop_operator(op)
    t1 = time.monotonic()
    op = env.start_operator()
    ready = time.monotonic() - t1
    time.sleep(20)
    rss_after = round(RssSampler(op.proc.pid).now_kb() / 1024, 1)
    writes_after = _metric(op, "finetune_status_writes_total")
    requests_after = _metric(op, "finetune_operator_api_requests_total")
    jobs_after = len(env.batch.list_namespaced_job(ns).items)
    figures = {
        "created_s": round(created, 1),
        "all_suspended_s": round(settled, 1),
        "jobs": jobs,
        "operator_rss_peak_mb": peak,
        "status_writes": writes_before,
        "restart_ready_s": round(ready, 1),
        "rss_20s_after_restart_mb": rss_after,
        "status_writes_20s_after_restart": writes_after,
        "api_requests_20s_after_restart": requests_after,
        "jobs_after_restart": jobs_after,
    }
    results.figures["idle_1000"] = figures
    ok = _clean(result) and jobs == 1000 and jobs_after == 1000 and writes_after == 0
    results.add(
        Case(
            "load",
            "idle-1000",
            "admin",
            "1,000 suspended runs: 1,000 suspended Jobs; a restart lists them without writing anything",
            GOOD if ok else WRONG,
            f"{figures}; {_summary(result)}",
            "1,000 FineTuneJobs with suspend: true; then restart the operator",
            time.monotonic() - t0,
        )
    )
    env.core.delete_namespace(ns)


def run_load(env: Env, results: Results) -> None:
    for scenario in (l_burst, l_ttl_zero, l_idle):
        mark = len(env.restarts)
        try:
            scenario(env, results)
        except Exception:  # noqa: BLE001
            results.add(Case("load", scenario.__name__, "harness", "", ERROR, traceback.format_exc()))
        if env.restarts_since(mark):  # the run needed what a Deployment would do: a restart
            results.cases[-1].observed += "; the operator exited on its own and was restarted: " + " | ".join(
                env.restarts_since(mark)
            )


# --- main ------------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[Env, Results], None]] = {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=CATEGORIES, help="run only this category (repeatable)")
    parser.add_argument("--out", type=Path, help="results JSON (default: <workdir>/adversarial-results.json)")
    parser.add_argument("--workdir", type=Path, help="where the cluster and the files live (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs, trainer outputs)")
    args = parser.parse_args(argv)
    chosen = [c for c in CATEGORIES if not args.only or c in args.only]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="finetune-adversarial-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or workdir / "adversarial-results.json"
    results = Results()
    t0 = time.monotonic()
    env = Env(workdir)
    needs_cluster = any(c != "data" for c in chosen)
    try:
        if needs_cluster:
            env.start()
        for category in chosen:
            started = time.monotonic()
            print(f"\n=== {category}", flush=True)
            try:
                RUNNERS[category](env, results)
            except Exception:  # noqa: BLE001 - one category's harness failure must not hide the others
                results.add(Case(category, "<category aborted>", "harness", "", ERROR, traceback.format_exc()))
            results.figures.setdefault("seconds", {})[category] = round(time.monotonic() - started, 1)
            if needs_cluster and category != "data":
                env.ensure_one_operator()
    finally:
        env.stop()
        results.figures["operator_restarts"] = env.restarts
        results.figures["total_seconds"] = round(time.monotonic() - t0, 1)
        out.write_text(
            json.dumps({"figures": results.figures, "cases": [asdict(c) for c in results.cases]}, indent=2) + "\n"
        )
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir / "cluster", ignore_errors=True)
    print(f"\n{results.table()}\n\nnot good:")
    for c in results.cases:
        if c.verdict != GOOD:
            print(
                f"- [{c.category}] {c.name} ({c.verdict}; {c.actor}): {one_line(c.observed)[:600]}\n"
                f"    repro: {c.repro[:600]}"
            )
    print(
        f"\nresults: {out}\nruntime: {results.figures['total_seconds']:.0f}s "
        f"({', '.join(f'{k} {v:.0f}s' for k, v in results.figures.get('seconds', {}).items())})"
    )
    return 0


RUNNERS.update(
    manifests=run_manifests, updates=run_updates, kills=run_kills, data=run_data, tenancy=run_tenancy, load=run_load
)

if __name__ == "__main__":
    sys.exit(main())
