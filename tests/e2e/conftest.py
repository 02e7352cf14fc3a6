"""Every end-to-end test runs the built images on the dev cluster's real node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_devcluster.images import Images
from support.e2e import CHART, RELEASE, RELEASE_NS, RELEASE_VALUES, helm, write_datasets

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker("cluster")
            item.add_marker("images")


@pytest.fixture
def run_ns(cluster: Any, kubectl: Any, namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The test's namespace opted in to the operator, Pod Security `restricted`, with the claims
    `datasets` (log-intent data, read-only for the trainer) and `artifacts` on the dev node."""
    kubectl(
        "label", "namespace", namespace, "finetune.dev/enabled=true", "pod-security.kubernetes.io/enforce=restricted"
    )
    data = write_datasets(tmp_path / "datasets")
    pvs = [
        cluster.local_claim(namespace, "datasets", data, "1Gi"),
        cluster.local_claim(namespace, "artifacts", tmp_path / "artifacts", "1Gi"),
    ]
    yield {"name": namespace, "datasets": data, "artifacts": tmp_path / "artifacts"}
    for pv in pvs:
        kubectl("delete", "pv", pv, "--wait=false", check=False)


@pytest.fixture(scope="module")
def release_values() -> list[str]:
    """More `helm install` arguments for this module's release (a module overrides this fixture)."""
    return []


@pytest.fixture(scope="module")
def operator_release(cluster: Any, kubectl: Any, images: Images, release_values: list[str]) -> Iterator[str]:
    """The chart installed with the operator and trainer images of this checkout; the operator
    runs as the chart's Deployment on the dev node. The CRD is the release's (adopted with
    --take-ownership when an earlier test of the session applied it)."""
    operator_repo, operator_tag = Images.split(images.operator)
    trainer_repo, trainer_tag = Images.split(images.trainer)
    helm(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NS,
        "--create-namespace",
        "--take-ownership",
        "--wait",
        "--timeout",
        "5m",
        "--set",
        f"image.repository={operator_repo}",
        "--set",
        f"image.tag={operator_tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        f"trainer.image.repository={trainer_repo}",
        "--set",
        f"trainer.image.tag={trainer_tag}",
        "--set",
        "trainer.pullPolicy=Never",
        *RELEASE_VALUES,
        *release_values,
    )
    yield RELEASE_NS
    helm(cluster, "uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait")
    # waited for: the next module's release installs into a namespace of the same name
    kubectl("delete", "namespace", RELEASE_NS, "--timeout=100s", check=False)
