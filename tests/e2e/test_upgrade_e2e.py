"""Releases as users get them, and upgrades with work in flight, on the dev cluster's real node.

Both releases go through `make release`'s code (finetune_devcluster.release) into the session's
OCI registry (the CNCF distribution registry, TLS from the cluster CA): the previous one
(hack/releases: its version and commit, built from `git archive` of that commit) and this checkout.
BuildKit pushes both images of each (on the local Debian stand-in bases of `make images`,
uncompressed layers), `helm push` the chart pinned to them by digest. The chart is then installed with
`helm install oci://...`, and the node's containerd pulls every image from the registry; nothing
is imported from an archive here.

The upgrade test installs the previous release, starts a run, and `helm upgrade`s to this
checkout's chart while it trains: the trainer pod keeps its old image, the new operator takes the
FineTuneJob over, it ends Succeeded with its one Job and intact artifacts, the CRD is the new one,
and FineTuneJobs made before the upgrade still read and reconcile. The rollback test then runs a
job under the new release and `helm rollback`s to the previous one while it trains."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from finetune_devcluster.registry import Registry
from finetune_devcluster.release import Released, chart_version, export_commit, release, releases
from finetune_trainer.config import parse_config
from support.e2e import (
    RELEASE_VALUES,
    ROOT,
    Runs,
    assert_artifacts_intact,
    assert_one_line,
    classification,
    final,
    helm,
    training,
)

RELEASE, RELEASE_NS = "upg", "finetune-upgrade-system"
CRD_NAME = "finetunejobs.finetune.dev"
CRD_FILE = ROOT / "crds" / "finetune.dev_finetunejobs.yaml"
# Uncompressed layers, like the archives of `make images`: the pushed blobs are the ones BuildKit
# keeps for those already (a compressed copy of the trainer's 6 GB virtualenv layer would take
# minutes to make and 3+ GB more of its cache, over the cache's cap). Real releases use gzip.
COMPRESSION = "uncompressed"
# Long enough to still be training when `helm upgrade --wait` or `helm rollback --wait` returns
# (a new operator pod pulled and ready: 20-40 s here), short enough for CI.
IN_FLIGHT = {
    "maxSteps": 40,
    "learningRate": 0.003,
    "batchSize": 16,
    "gradientAccumulationSteps": 1,
    "maxSeqLength": 64,
    "optimizer": "adamw_torch",
    "gradientCheckpointing": False,
    "loggingSteps": 5,
}
SHORT = {**IN_FLIGHT, "maxSteps": 4}  # the other runs only have to succeed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


@dataclass(frozen=True)
class Both:
    previous: Released
    previous_commit: str
    head: Released


@pytest.fixture(scope="module")
def released(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Both:
    """The previous release and this checkout, pushed to the registry under <registry>/finetune.

    The previous trainer is its own code on this checkout's dependency lock: the 6 GB dependency
    layer comes from the lock alone, so it is shared with this checkout's trainer (BuildKit's
    cache, the registry and the node hold it once) instead of a second pip install and 6.5 GB more
    of each. What an upgrade meets of the old trainer, its code (config reading, progress patches,
    the result it leaves), is the previous release's (docs/development.md, "Releases")."""
    version, commit = releases()[-1]
    source = export_commit(commit, tmp_path_factory.mktemp("previous-release") / "src")
    shutil.copy(ROOT / "requirements" / "trainer.txt", source / "requirements" / "trainer.txt")
    repository = f"{registry.host}/finetune"
    t0 = time.monotonic()
    previous = release(repository, version, source, registry.ca_file, COMPRESSION, base_images="local")
    t1 = time.monotonic()
    head = release(repository, chart_version(ROOT), ROOT, registry.ca_file, COMPRESSION, base_images="local")
    print(f"\nreleased {version} in {t1 - t0:.0f}s, {head.version} in {time.monotonic() - t1:.0f}s", flush=True)
    assert previous.version != head.version
    return Both(previous, commit, head)


@pytest.fixture(scope="module")
def upgrade_release(cluster: Any, kubectl: Any) -> Iterator[str]:
    """The release the tests install, upgrade and roll back: uninstalled after the module (its CRD
    stays: crds.keep)."""
    yield RELEASE
    helm(cluster, "uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", "--ignore-not-found", check=False)
    kubectl("delete", "namespace", RELEASE_NS, "--wait=false", check=False)


def install_args(chart: Released, registry: Registry) -> list[str]:
    return [
        chart.chart,
        "--version",
        chart.version,
        "--ca-file",
        str(registry.ca_file),
        "--namespace",
        RELEASE_NS,
        "--wait",
        "--timeout",
        "5m",
        *RELEASE_VALUES,
    ]


def operator_runs(core: client.CoreV1Api, ref: str, timeout: float = 120) -> None:
    """Every operator pod that is not terminating runs `ref`, and is ready (the rollout's old pod
    is deleted a moment after the new one is ready)."""
    deadline = time.monotonic() + timeout
    while True:
        pods = core.list_namespaced_pod(RELEASE_NS, label_selector=f"app.kubernetes.io/instance={RELEASE}").items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        images = {p.spec.containers[0].image for p in live}
        if images == {ref} and all(c.ready for p in live for c in p.status.container_statuses or ()):
            return
        assert time.monotonic() < deadline, f"operator pods run {images}, not only {ref}"
        time.sleep(1)


def pod_of(runs: Runs, name: str) -> client.V1Pod:
    return runs.core.read_namespaced_pod(runs.status(name)["podName"], runs.namespace)


def ran_image(pod: client.V1Pod, ref: str) -> None:
    """The pod's container was created from `ref` (REGISTRY/name@sha256:...), which containerd
    resolved from the registry: its image ID is that digest."""
    assert pod.spec.containers[0].image == ref, pod.spec.containers[0].image
    digest = ref.split("@", 1)[1]
    assert pod.status.container_statuses[0].image_id.endswith(digest), pod.status.container_statuses[0].image_id


def pulled_by_node(registry: Registry, cluster: Any, ref: str) -> None:
    """The registry's access log shows the node fetching that manifest over TLS."""
    repository, digest = ref.split("/", 1)[1].split("@", 1)
    log = registry.log_path.read_text()
    wanted = f"/v2/{repository}/manifests/{digest}"  # HEAD, then GET unless containerd has it
    lines = [line for line in log.splitlines() if wanted in line and cluster.node.node_ip in line]
    assert lines, f"{wanted} from {cluster.node.node_ip} not in {registry.log_path}"


def succeeded_once(runs: Runs, name: str, artifacts: Path, job_uid: str | None = None) -> dict[str, Any]:
    """The run ends Succeeded with exactly one Job (the same one, when its uid is given), and its
    artifacts complete with the sums SHA256SUMS lists."""
    st = runs.wait(name, final, 900, "finished")
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert_one_line(st)
    jobs = runs.jobs_of(name)
    assert [j.metadata.name for j in jobs] == [f"{name}-trainer"], [j.metadata.name for j in jobs]
    if job_uid:
        assert jobs[0].metadata.uid == job_uid, "the Job was replaced"
    assert_artifacts_intact(artifacts / name)
    return st


def assert_crd_is_heads(kubectl: Any, head: Released) -> None:
    crd = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert crd["metadata"]["labels"]["helm.sh/chart"] == f"finetune-operator-{head.version}"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    want = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"]
    got = crd["spec"]["versions"]
    assert [v["schema"] for v in got] == [v["schema"] for v in want]


def test_upgrade_with_a_job_in_flight(
    cluster: Any,
    kubectl: Any,
    kube_api: client.ApiClient,
    registry: Registry,
    released: Both,
    upgrade_release: str,
    run_ns: dict[str, Any],
) -> None:
    previous, head = released.previous, released.head
    runs = Runs(kube_api, run_ns["name"])
    # The cluster as the previous release leaves it: its CRD, installed by Helm from its crds/ (which
    # Helm skips when the CRD exists, as it may in this session: so it is applied here).
    old_crd = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{released.previous_commit}:crds/finetune.dev_finetunejobs.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=old_crd)
    helm(cluster, "install", RELEASE, *install_args(previous, registry), "--create-namespace")
    operator_runs(runs.core, previous.images["operator"])
    pulled_by_node(registry, cluster, previous.images["operator"])

    runs.create(classification("in-flight", training=IN_FLIGHT))
    runs.create(classification("parked", suspend=True, training=SHORT))  # resumed after the upgrade
    st = runs.wait("in-flight", training, 600, "training")
    job_uid = runs.jobs_of("in-flight")[0].metadata.uid
    pod = pod_of(runs, "in-flight")
    ran_image(pod, previous.images["trainer"])
    pulled_by_node(registry, cluster, previous.images["trainer"])
    # This checkout's trainer reads the config the previous operator wrote.
    runs.wait("parked", lambda s: s.get("jobName"), 120, "given its Job")
    written = runs.core.read_namespaced_config_map("parked-config", runs.namespace).data["config.json"]
    parse_config(json.loads(written), "parked-config")

    # A plain upgrade stops before changing anything: the CRD the previous release installed from
    # crds/ belongs to no release. --take-ownership adopts it (the documented upgrade).
    refused = helm(cluster, "upgrade", RELEASE, *install_args(head, registry), check=False)
    assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr, refused.stderr
    helm(cluster, "upgrade", RELEASE, *install_args(head, registry), "--take-ownership")
    assert not final(runs.status("in-flight")), "finished before the upgrade did: nothing was in flight"
    operator_runs(runs.core, head.images["operator"])
    pulled_by_node(registry, cluster, head.images["operator"])
    assert_crd_is_heads(kubectl, head)

    # Made before the upgrade: the new operator reconciles them. `parked` resumes with the Job the
    # previous operator made (its image and config); `after` is new and gets the new trainer.
    runs.patch_spec("parked", {"suspend": False})
    runs.create(classification("after", training=SHORT))
    st = succeeded_once(runs, "in-flight", run_ns["artifacts"], job_uid)
    assert pod_of(runs, "in-flight").metadata.uid == pod.metadata.uid, "the trainer pod was replaced"
    assert st["metrics"]["accuracy"] > st["metrics"]["baselineAccuracy"], st["metrics"]
    succeeded_once(runs, "parked", run_ns["artifacts"])
    ran_image(pod_of(runs, "parked"), previous.images["trainer"])
    succeeded_once(runs, "after", run_ns["artifacts"])
    ran_image(pod_of(runs, "after"), head.images["trainer"])
    pulled_by_node(registry, cluster, head.images["trainer"])


def test_rollback_with_a_job_in_flight(
    cluster: Any,
    kubectl: Any,
    kube_api: client.ApiClient,
    registry: Registry,
    released: Both,
    upgrade_release: str,
    run_ns: dict[str, Any],
) -> None:
    previous, head = released.previous, released.head
    runs = Runs(kube_api, run_ns["name"])
    history = json.loads(helm(cluster, "history", RELEASE, "-n", RELEASE_NS, "-o", "json", check=False).stdout or "[]")
    if not history:  # run on its own: the upgrade test's release is not there
        helm(cluster, "install", RELEASE, *install_args(previous, registry), "--create-namespace", "--take-ownership")
        helm(cluster, "upgrade", RELEASE, *install_args(head, registry), "--take-ownership")
        history = json.loads(helm(cluster, "history", RELEASE, "-n", RELEASE_NS, "-o", "json").stdout)
    assert history[-1]["chart"] == f"finetune-operator-{head.version}" and history[-1]["status"] == "deployed"
    first = next(h["revision"] for h in history if h["chart"] == f"finetune-operator-{previous.version}")

    runs.create(classification("in-flight", training=IN_FLIGHT))
    runs.wait("in-flight", training, 600, "training")
    job_uid = runs.jobs_of("in-flight")[0].metadata.uid
    pod = pod_of(runs, "in-flight")
    ran_image(pod, head.images["trainer"])

    out = helm(cluster, "rollback", RELEASE, str(first), "-n", RELEASE_NS, "--wait", "--timeout", "5m").stdout
    assert "Rollback was a success" in out, out
    assert not final(runs.status("in-flight")), "finished before the rollback did: nothing was in flight"
    operator_runs(runs.core, previous.images["operator"])
    # The previous revision has no CRD template; keep left it, as this checkout's CRD.
    assert_crd_is_heads(kubectl, head)

    runs.create(classification("after-rollback", training=SHORT))
    succeeded_once(runs, "in-flight", run_ns["artifacts"], job_uid)
    assert pod_of(runs, "in-flight").metadata.uid == pod.metadata.uid, "the trainer pod was replaced"
    succeeded_once(runs, "after-rollback", run_ns["artifacts"])
    ran_image(pod_of(runs, "after-rollback"), previous.images["trainer"])
