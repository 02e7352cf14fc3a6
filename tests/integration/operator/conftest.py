"""Fixtures for the operator's integration tests: the CRD installed, and the operator running as a
real subprocess under its own ServiceAccount bound to charts/finetune-operator/files/rbac-rules.yaml
(a kubeconfig built from a TokenRequest token), never as admin."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.operator import CRD_FILE, GROUP, PLURAL, Ftj, OperatorProcess, assert_never_forbidden, launch_operator


@pytest.fixture(scope="session")
def crd(cluster: Any, kubectl: Any) -> str:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    # `kubectl wait` errors out (instead of waiting) while a new CRD has no status.conditions yet
    deadline = time.monotonic() + 60
    while kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}", check=False
    ).returncode:
        assert time.monotonic() < deadline, "the CRD never became Established"
        time.sleep(0.2)
    # the API is served a moment after Established
    deadline = time.monotonic() + 30
    while kubectl("get", PLURAL, "-A", check=False).returncode != 0:
        assert time.monotonic() < deadline, "finetunejobs not served"
        time.sleep(0.2)
    return f"{PLURAL}.{GROUP}"


@pytest.fixture(scope="session")
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@pytest.fixture
def ftjs(custom: client.CustomObjectsApi, kube_api: client.ApiClient, namespace: str, crd: str) -> Ftj:
    return Ftj(custom, kube_api, namespace)


@pytest.fixture
def start_operator(
    cluster: Any, kubectl: Any, crd: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """start_operator(namespace, *extra_args, ready=True) -> a running operator for that namespace."""
    procs: list[OperatorProcess] = []

    def start(
        namespace: str, *extra: str, ready: bool = True, leader_election: bool = True, clusterwide: bool = False
    ) -> OperatorProcess:
        op = launch_operator(
            cluster,
            kubectl,
            namespace,
            tmp_path,
            *extra,
            index=len(procs),
            leader_election=leader_election,
            clusterwide=clusterwide,
        )
        procs.append(op)
        if ready:
            op.wait_ready()
        return op

    yield start
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else True
    for op in procs:
        op.stop()
        if not failed:  # every request the operator sent was allowed by its RBAC rules
            assert_never_forbidden(op)
        if failed:
            print(f"--- operator log {op.log}\n{op.logs()[-8000:]}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
