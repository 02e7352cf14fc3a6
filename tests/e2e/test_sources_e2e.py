"""Data and models from outside the cluster, on the real node (issue 18): the log-intent example
trained from S3 (versitygw) and from an HTTPS server, a model from the Hub stand-in fetched once into
the model cache for two concurrent runs, and every bad source ending before training with its own
reason, nothing half-written left. The servers are real and run on this machine; the Hub is a
protocol-level stand-in (devcluster/finetune_devcluster/hubserver.py)."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from finetune_devcluster.dataservers import HUB_MODEL, HUB_TAG
from support.e2e import Runs, assert_one_line, classification
from support.fetching import s3_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("operator_release")]
CACHE = "model-cache"


@pytest.fixture(scope="module")
def release_values(hub: Any) -> list[str]:
    """The chart told where the Hub (stand-in) is, to trust the cluster CA (which signs the test
    servers' certificates) and to cache models on each namespace's claim `model-cache`."""
    return [
        "--set",
        f"sources.hubEndpoint={hub.url}",
        "--set",
        "sources.caBundle.configMap=kube-root-ca.crt",
        "--set",
        f"sources.modelCache.claimName={CACHE}",
    ]


@pytest.fixture
def sources_ns(
    cluster: Any, kubectl: Any, run_ns: dict[str, Any], object_store: Any, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """run_ns plus the model cache claim, a bucket with the log-intent data, and the store's
    credentials as a Secret (`s3`, and `s3-wrong` with a wrong secret key)."""
    ns = run_ns["name"]
    cache_pv = cluster.local_claim(ns, CACHE, tmp_path / "cache", "2Gi")
    bucket = f"data-{uuid.uuid4().hex[:8]}"
    s3 = s3_client(object_store)
    s3.create_bucket(Bucket=bucket)
    for name in ("train.jsonl", "eval.jsonl"):
        body = (run_ns["datasets"] / "log-intent" / name).read_bytes()
        s3.put_object(Bucket=bucket, Key=f"log-intent/{name}", Body=body)
    for secret, key in (("s3", object_store.secret_key), ("s3-wrong", "not-the-secret")):
        kubectl(
            "create", "secret", "generic", secret,
            f"--from-literal=AWS_ACCESS_KEY_ID={object_store.access_key}",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={key}",
            f"--from-literal=AWS_ENDPOINT_URL={object_store.url}",
            f"--from-literal=AWS_REGION={object_store.region}",
            namespace=ns,
        )  # fmt: skip
    yield {**run_ns, "bucket": bucket, "cache": tmp_path / "cache"}
    kubectl("delete", "pv", cache_pv, "--wait=false", check=False)


def s3_dataset(bucket: str, key: str = "train.jsonl", secret: str = "s3") -> dict[str, Any]:
    return {
        "source": f"s3://{bucket}/log-intent/{key}",
        "validationSource": f"s3://{bucket}/log-intent/eval.jsonl",
        "credentialsSecretRef": {"name": secret},
        "format": "classification",
    }


def sources_of(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["field"]: s for s in status.get("sources") or []}


def test_log_intent_from_s3_and_from_https(
    kube_api: client.ApiClient, sources_ns: dict[str, Any], https_files: Any
) -> None:
    ns = sources_ns["name"]
    runs = Runs(kube_api, ns)
    train = (sources_ns["datasets"] / "log-intent" / "train.jsonl").read_bytes()
    url = https_files.put(f"{ns}/train.jsonl", train)
    runs.create(classification("from-s3", dataset=s3_dataset(sources_ns["bucket"])))
    https = {
        "source": url,
        "sha256": hashlib.sha256(train).hexdigest(),
        "validationSource": "pvc://datasets/log-intent/eval.jsonl",
        "format": "classification",
    }
    runs.create(classification("from-https", dataset=https))
    for name in ("from-s3", "from-https"):
        st = runs.wait(name, lambda s: s.get("phase") in ("Succeeded", "Failed"), 1200, "finished")
        assert st["phase"] == "Succeeded", st
        source = sources_of(st)["dataset.source"]
        assert source["sha256"] == hashlib.sha256(train).hexdigest() and source["sizeBytes"] == len(train), source
        assert source["cached"] is False and source["bytesDownloaded"] == len(train), source
        assert st["metrics"]["accuracy"] > st["metrics"]["baselineAccuracy"], st["metrics"]


def test_a_hub_model_is_downloaded_once_for_two_concurrent_runs(
    kube_api: client.ApiClient, sources_ns: dict[str, Any]
) -> None:
    """Two runs of one uncached base at the same time: one downloads it into the cache, the other
    waits for that download and uses it (its status says so); the trainers mount it read-only."""
    ns = sources_ns["name"]
    runs = Runs(kube_api, ns)
    model = {"source": f"hf://{HUB_MODEL}", "revision": HUB_TAG}
    for name in ("hub-a", "hub-b"):
        runs.create(classification(name, model=model))
    models = {}
    for name in ("hub-a", "hub-b"):
        st = runs.wait(name, lambda s: s.get("phase") in ("Succeeded", "Failed"), 1500, "finished")
        assert st["phase"] == "Succeeded", st
        models[name] = sources_of(st)["model.source"]
    downloads = sorted(m["bytesDownloaded"] for m in models.values())
    assert downloads[0] == 0 and downloads[1] > 80_000_000, models  # MiniLM's weights: downloaded once
    assert sorted(m["cached"] for m in models.values()) == [False, True], models
    assert {m["location"] for m in models.values()} == {next(iter(models.values()))["location"]}


def test_bad_sources_end_before_training_with_their_own_reason(
    cluster: Any,
    kubectl: Any,
    kube_api: client.ApiClient,
    sources_ns: dict[str, Any],
    https_files: Any,
    object_store: Any,
    tmp_path: Path,
) -> None:
    """Each case fails in its fetch Job with the reason a user can act on; no trainer Job is
    created and no temporary download is left (the tmpfs claim `tiny` holds 16 KiB, less than
    the data)."""
    ns, bucket = sources_ns["name"], sources_ns["bucket"]
    runs = Runs(kube_api, ns)
    data = (sources_ns["datasets"] / "log-intent" / "train.jsonl").read_bytes()
    url = https_files.put(f"{ns}/bad/train.jsonl", data)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    # mounted in the node's own mount namespace (private propagation): what its kubelet and pods see
    cluster.node.run("mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(tiny))
    tiny_pv = cluster.local_claim(ns, "tiny", tiny, "1Mi")
    cut = dict(s3_dataset(bucket), credentialsSecretRef={"name": "s3-cut"})
    kubectl(
        "create", "secret", "generic", "s3-cut",
        f"--from-literal=AWS_ACCESS_KEY_ID={object_store.access_key}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={object_store.secret_key}",
        f"--from-literal=AWS_ENDPOINT_URL={object_store.cutoff_url}",
        namespace=ns,
    )  # fmt: skip
    https = {"source": url, "validationSource": "pvc://datasets/log-intent/eval.jsonl", "format": "classification"}
    cases = {
        "bad-sha": ({"dataset": {**https, "sha256": "0" * 64}}, "ChecksumMismatch"),
        "bad-creds": ({"dataset": s3_dataset(bucket, secret="s3-wrong")}, "SourceForbidden"),
        "no-key": ({"dataset": s3_dataset(bucket, key="nope.jsonl")}, "SourceNotFound"),
        "no-bucket": ({"dataset": s3_dataset(f"{bucket}-gone")}, "SourceNotFound"),
        "no-secret": ({"dataset": s3_dataset(bucket, secret="s3-none")}, "SecretNotFound"),
        "cut-off": ({"dataset": cut}, "DownloadFailed"),
        "no-revision": ({"model": {"source": f"hf://{HUB_MODEL}", "revision": "v9.9"}}, "RevisionNotFound"),
        "full": (
            {"dataset": {**https, "sha256": hashlib.sha256(data).hexdigest()}, "output": {"pvc": "tiny", "path": "x"}},
            "CacheFull",
        ),
    }
    try:
        for name, (spec, _) in cases.items():
            runs.create(classification(name, **spec))
        errors = []
        for name, (_, reason) in cases.items():
            st = runs.wait(name, lambda s: s.get("phase") == "Failed", 900, "Failed")
            try:
                assert st["reason"] == reason, (st["reason"], st["message"])
                assert_one_line(st)
                assert all(j.metadata.name.endswith("-fetch") for j in runs.jobs_of(name)), runs.jobs_of(name)
            except AssertionError as exc:
                errors.append(f"{name}: {exc}")
        assert not errors, "\n".join(errors)
        # nothing half-written: no cache entry for the missing revision, no temporary downloads anywhere
        half = [p for root in (sources_ns["cache"], sources_ns["artifacts"]) for p in root.rglob(".tmp/*")]
        half += cluster.node.run("find", str(tiny), "-path", "*/.tmp/*").split()
        assert not half, half
    finally:
        kubectl("delete", "ftj", "--all", "--wait=false", namespace=ns, check=False)
        kubectl("delete", "pv", tiny_pv, "--wait=false", check=False)
        subprocess.run(cluster.node.nsenter("umount", "-l", str(tiny)), check=False)
