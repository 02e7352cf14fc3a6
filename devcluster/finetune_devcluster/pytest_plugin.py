"""pytest fixtures for a real local cluster. Register with
`pytest_plugins = ["finetune_devcluster.pytest_plugin"]` in tests/conftest.py.

Fixtures: `cluster` (session: control plane + kwok GPU nodes), `kube_api` (ApiClient), `namespace`
(fresh per test, deleted after), `kubectl` (runs kubectl against the cluster), `dev_node`
(session, started on first use: the real node, kubelet + containerd, that runs pods),
`dev_nodes_2` (session, started on first use: that node and a second real one, `dev-node-2`),
`images` (session: the operator and trainer images built from the Dockerfiles and loaded into
every real node, those started later included), `registry` (session, started on first use: an
OCI registry with TLS that the nodes pull from), `wait_for` (polling with a diagnostic dump on
timeout), and the servers models and data are downloaded from (session, started on first use, on
the address the node's pods reach): `object_store` (versitygw, S3), `https_files` (static HTTPS
files), `hub` (the Hugging Face Hub stand-in); see finetune_devcluster.dataservers.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import pytest
from kubernetes import client

from . import images as product_images
from .cluster import DevCluster
from .dataservers import FileServer, HubServer, ObjectStore, TlsServer
from .registry import Registry


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
def dev_nodes_2(cluster: DevCluster, dev_node: str) -> list[str]:
    """Start a second real node, `dev-node-2` (once per session); returns both names, `dev-node`
    first. It carries `finetune.dev/dev-node=extra` (so pods selecting `finetune.dev/dev-node=true`
    stay on the first node) and, like the first, `finetune.dev/real-node=true`."""
    t0 = time.monotonic()
    names = cluster.start_nodes(2)
    print(f"\ndevcluster: node {names[1]} Ready in {time.monotonic() - t0:.1f}s")
    return names


@pytest.fixture(scope="session")
def images(cluster: DevCluster, dev_node: str) -> product_images.Images:
    """The operator and trainer images (built from the Dockerfiles, or reused when their inputs
    are unchanged), loaded into the containerd of every real node (a node started later, by
    `dev_nodes_2`, imports them when it starts)."""
    return product_images.build_and_load(cluster)


@pytest.fixture(scope="session")
def registry(cluster: DevCluster, dev_node: str) -> Registry:
    """An OCI registry (the CNCF distribution registry, hack/build-registry.sh) at
    `registry.host` (10.213.N.1:<port>), TLS from the cluster CA (`registry.ca_file`), which the
    node's containerd trusts; stopped with the cluster."""
    t0 = time.monotonic()
    started = cluster.start_registry()
    print(f"\ndevcluster: registry {started.host} ready in {time.monotonic() - t0:.1f}s")
    return started


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


S = TypeVar("S", bound=TlsServer)


def _data_server(cluster: DevCluster, kind: type[S], name: str) -> S:
    """`kind` on the host end of the node's link (what its pods reach), certs from the cluster CA."""
    address = cluster.node.host_ip if cluster.node else "127.0.0.1"
    cp = cluster.control_plane
    return kind(cluster.workdir / "dataservers" / name, address, cp.pki, cp.logs)


@pytest.fixture(scope="session")
def object_store(cluster: DevCluster) -> Iterator[ObjectStore]:
    """versitygw (S3) on the dev cluster's address: `url`, `cutoff_url`, `access_key`, `secret_key`,
    `region`, `ca` (the cluster CA file)."""
    server = _data_server(cluster, ObjectStore, "s3")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def https_files(cluster: DevCluster) -> Iterator[FileServer]:
    """The static HTTPS file server: `put(name, data)` publishes a file and returns its URL."""
    server = _data_server(cluster, FileServer, "https")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hub(cluster: DevCluster) -> Iterator[HubServer]:
    """The Hugging Face Hub stand-in: HF_ENDPOINT=`url`, HF_TOKEN=`token`."""
    server = _data_server(cluster, HubServer, "hub")
    try:
        yield server.start()
    finally:
        server.stop()
