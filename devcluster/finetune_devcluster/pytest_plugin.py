"""pytest fixtures for a real local cluster. Register with
`pytest_plugins = ["finetune_devcluster.pytest_plugin"]` in tests/conftest.py.

Fixtures: `cluster` (session: control plane + kwok GPU nodes), `kube_api` (ApiClient), `namespace`
(fresh per test, deleted after), `kubectl` (runs kubectl against the cluster), `dev_node`
(session, started on first use: the real node, kubelet + containerd, that runs pods), `images`
(session: the operator and trainer images built from the Dockerfiles and loaded into the node),
`wait_for` (polling with a diagnostic dump on timeout).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import pytest
from kubernetes import client

from . import images as product_images
from .cluster import DevCluster


class Kubectl(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, namespace: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


def make_kubectl(cluster: DevCluster) -> Kubectl:
    """A function running this cluster's kubectl with its kubeconfig (text output, captured)."""
    binary = str(cluster.control_plane.bin_dir / "kubectl")

    def kubectl(
        *args: str, input: str | None = None, check: bool = True, namespace: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [binary, f"--kubeconfig={cluster.kubeconfig}", *(["-n", namespace] if namespace else []), *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv[2:])} failed ({result.returncode}):\n{result.stderr}")
        return result

    return kubectl


def wait_for(
    predicate: Callable[[], Any],
    kubectl: Kubectl,
    timeout: float = 60.0,
    description: str = "",
    namespace: str | None = None,
    objects: Sequence[str] = ("jobs", "pods"),
) -> Any:
    """Poll `predicate` until it returns something truthy and return that; on timeout raise
    AssertionError with the namespace's events and the YAML of `objects` in it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    report = [f"timed out after {timeout}s waiting for {description or predicate}"]
    if namespace:
        events = kubectl("get", "events", "--sort-by=.lastTimestamp", namespace=namespace, check=False)
        report.append(f"--- kubectl get events -n {namespace}\n{events.stdout}{events.stderr}")
        for obj in objects:
            dump = kubectl("get", obj, "-o", "yaml", namespace=namespace, check=False)
            report.append(f"--- kubectl get {obj} -n {namespace} -o yaml\n{dump.stdout}{dump.stderr}")
    raise AssertionError("\n".join(report))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """The session's cluster; KUBECONFIG points at it for subprocesses."""
    dev = DevCluster(tmp_path_factory.mktemp("devcluster"))
    t0 = time.monotonic()
    dev.start()
    print(
        f"\ndevcluster: control plane ready in {dev.control_plane.ready_seconds:.1f}s, "
        f"with kwok nodes in {time.monotonic() - t0:.1f}s; KUBECONFIG={dev.kubeconfig}"
    )
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(dev.kubeconfig)
    try:
        yield dev
    finally:
        dev.stop()
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old


@pytest.fixture(scope="session")
def kube_api(cluster: DevCluster) -> Iterator[client.ApiClient]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture(scope="session")
def kubectl(cluster: DevCluster) -> Kubectl:
    return make_kubectl(cluster)


@pytest.fixture
def namespace(kube_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    name = f"{re.sub(r'[^a-z0-9]+', '-', request.node.name.lower()).strip('-')[:40]}-{uuid.uuid4().hex[:5]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30  # pods need the namespace's default ServiceAccount
    while not core.list_namespaced_service_account(name, field_selector="metadata.name=default").items:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {name}"
        time.sleep(0.1)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def dev_node(cluster: DevCluster) -> str:
    """Start the real node (once per session); returns its node name."""
    t0 = time.monotonic()
    name = cluster.start_node()
    print(f"\ndevcluster: node {name} Ready in {time.monotonic() - t0:.1f}s")
    return name


@pytest.fixture(scope="session")
def images(cluster: DevCluster, dev_node: str) -> product_images.Images:
    """The operator and trainer images (built from the Dockerfiles, or reused when their inputs
    are unchanged), loaded into the node's containerd."""
    assert cluster.node
    return product_images.build_and_load(cluster.node)


@pytest.fixture(name="wait_for")
def wait_for_fixture(kubectl: Kubectl) -> Callable[..., Any]:
    """wait_for(predicate, timeout=60, description="", namespace=None, objects=("jobs", "pods"))."""

    def bound(
        predicate: Callable[[], Any],
        timeout: float = 60.0,
        description: str = "",
        namespace: str | None = None,
        objects: Sequence[str] = ("jobs", "pods"),
    ) -> Any:
        return wait_for(predicate, kubectl, timeout, description, namespace, objects)

    return bound
