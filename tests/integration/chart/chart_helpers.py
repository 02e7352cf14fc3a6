"""Shared by the chart tests: where the chart and helm are, and rendering it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "finetune-operator"
RULES_FILE = CHART / "files" / "rbac-rules.yaml"


def helm_binary() -> str:
    """helm from the project's binary cache (hack/build-k8s-binaries.sh), else from PATH.

    Missing helm skips the test on a developer machine but fails it in CI (CI=true), where
    `make test` builds it first."""
    try:
        from finetune_devcluster.binaries import bin_dir

        candidate = bin_dir() / "helm"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("helm")
    if found:
        return found
    message = "helm not found: run `make k8s-bin` (hack/build-k8s-binaries.sh builds it)"
    pytest.fail(message)


def run_helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    home = Path(tempfile.gettempdir()) / "finetune-operator-helm"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def set_args(values: dict[str, Any] | None) -> list[str]:
    """`--set-json key=<json>` for each top-level key (keeps types exact)."""
    out: list[str] = []
    for key, value in (values or {}).items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


def render(
    values: dict[str, Any] | None = None,
    *extra: str,
    release: str = "ft",
    namespace: str = "finetune-system",
    include_crds: bool = False,
) -> list[dict[str, Any]]:
    """`helm template` the chart and return the objects."""
    args = ["template", release, str(CHART), "--namespace", namespace, *set_args(values), *extra]
    if include_crds:
        args.append("--include-crds")
    out = run_helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        o
        for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def rules_file() -> dict[str, Any]:
    return yaml.safe_load(RULES_FILE.read_text())


def operator_rules(trainer_cluster_role: str) -> list[dict[str, Any]]:
    """rules_file() as the chart renders it: the `bind` rule names the release's trainer ClusterRole,
    keys sorted like Helm's toYaml."""
    out = []
    for rule in rules_file():
        if "clusterroles" in rule["resources"]:
            rule = {**rule, "resourceNames": [trainer_cluster_role]}
        out.append(dict(sorted(rule.items())))
    return out
