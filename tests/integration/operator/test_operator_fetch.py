"""The download step as the operator runs it, against the real API server with kwok simulating the
fetch and trainer pods (their containers' exit codes and termination messages steered per
container by sim.finetune.dev/*.<container> annotations). What `finetune-train fetch` itself does
runs for real in tests/integration/fetch and tests/e2e."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from finetune_api.protocol import FetchRecord
from support.operator import (
    SIMULATED_SUCCESS,
    Ftj,
    OperatorProcess,
    assert_never_forbidden,
    launch_operator,
    make_namespace,
    minimal_ftj,
    provision_claims,
    sim,
    summary_json,
)

pytestmark = pytest.mark.timeout(240)
SHA = "ab" * 32
MODEL = "hf://acme/tiny-llm"
DATA = "https://files.example/train.jsonl"


def record(source: str, cached: bool) -> str:
    return FetchRecord(
        source=source,
        path="/x",
        file_count=1,
        size_bytes=2048,
        sha256=SHA,
        verified_with="sha256",
        bytes_downloaded=0 if cached else 2048,
        seconds=0.5,
        cached=cached,
    ).to_termination_message()


def remote_ftj(name: str, **annotations: str) -> dict[str, Any]:
    return minimal_ftj(
        name,
        model={"source": MODEL, "revision": "v1"},
        dataset={"source": DATA, "sha256": SHA, "credentialsSecretRef": {"name": "s3"}},
        podAnnotations={**sim(duration="2s", termination_message=SIMULATED_SUCCESS), **annotations},
    )


class Env:
    def __init__(self, ns: str, ftjs: Ftj, op: OperatorProcess):
        self.ns, self.ftjs, self.op = ns, ftjs, op
        self.batch = client.BatchV1Api(ftjs.kube_api)

    def jobs(self, name: str) -> dict[str, Any]:
        found = self.batch.list_namespaced_job(self.ns, label_selector=f"finetune.dev/finetunejob={name}").items
        return {j.metadata.name: j for j in found}


@pytest.fixture(scope="module")
def env(
    cluster: Any, kubectl: Any, kube_api: client.ApiClient, crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    ns = make_namespace(kubectl, "ftj-fetch")
    provision_claims(kubectl, ns, ("data", "artifacts", "model-cache"))
    op = launch_operator(
        cluster, kubectl, ns, tmp_path_factory.mktemp("operator"), "--model-cache-claim", "model-cache"
    )
    op.wait_ready()
    ftjs = Ftj(client.CustomObjectsApi(kube_api), kube_api, ns)
    ftjs.create(
        remote_ftj(
            "fetched",
            **{
                "sim.finetune.dev/termination-message.model": record(MODEL, cached=True),
                "sim.finetune.dev/termination-message.dataset": record(DATA, cached=False),
            },
        )
    )
    bad = summary_json(
        outcome="failed", reason="ChecksumMismatch", message=f"{DATA}: sha256 is 00, the spec says {SHA}"
    )
    ftjs.create(
        remote_ftj(
            "badsum",
            **{
                "sim.finetune.dev/termination-message.model": record(MODEL, cached=True),
                "sim.finetune.dev/exit-code.dataset": "10",
                "sim.finetune.dev/termination-message.dataset": bad,
            },
        )
    )
    yield Env(ns, ftjs, op)
    code = op.stop()
    print(f"--- operator log (exit {code})\n{op.logs()[-6000:]}")
    kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert_never_forbidden(op)


def wait_phase(env: Env, wait_for: Any, name: str, phase: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := env.ftjs.status(name)).get("phase") == phase and s or None,
        timeout=120,
        namespace=env.ns,
        description=f"{name} {phase}",
        objects=("finetunejobs", "jobs", "pods"),
    )


def test_the_trainer_job_comes_only_after_the_downloads(env: Env, wait_for: Any) -> None:
    s = wait_phase(env, wait_for, "fetched", "Succeeded")
    jobs = env.jobs("fetched")
    assert set(jobs) == {"fetched-fetch", "fetched-trainer"}
    fetch, trainer = jobs["fetched-fetch"], jobs["fetched-trainer"]
    assert fetch.status.completion_time <= trainer.metadata.creation_timestamp
    pod = fetch.spec.template.spec
    assert [c.name for c in pod.containers] == ["model", "dataset"]
    assert pod.service_account_name == "fetched-trainer"
    assert fetch.metadata.owner_references[0].name == "fetched"
    cache = next(v for v in trainer.spec.template.spec.volumes if v.name == "model-cache")
    assert cache.persistent_volume_claim.claim_name == "model-cache" and cache.persistent_volume_claim.read_only
    model, data = s["sources"]
    assert (model["field"], model["uri"], model["cached"], model["bytesDownloaded"]) == ("model.source", MODEL, True, 0)
    assert model["location"].startswith("model-cache:acme-tiny-llm@v1-")
    assert (data["field"], data["cached"], data["bytesDownloaded"], data["sha256"]) == (
        "dataset.source",
        False,
        2048,
        SHA,
    )
    assert data["location"].startswith("artifacts:.finetune-fetch/files.example-train.jsonl-")


def test_a_failed_download_fails_the_run_before_any_trainer(env: Env, wait_for: Any) -> None:
    s = wait_phase(env, wait_for, "badsum", "Failed")
    assert s["reason"] == "ChecksumMismatch"
    assert s["message"] == f"dataset.source {DATA}: {DATA}: sha256 is 00, the spec says {SHA}"
    assert set(env.jobs("badsum")) == {"badsum-fetch"}  # no trainer Job, no GPU time
    assert [x["field"] for x in s.get("sources", [])] == ["model.source"]


def test_a_decoy_fetch_job_is_a_name_conflict(env: Env, wait_for: Any, kubectl: Any) -> None:
    """A Job named <name>-fetch that this FineTuneJob did not create is never waited for nor adopted."""
    decoy = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "decoy-fetch"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "x", "image": "busybox", "command": ["true"]}],
                    "nodeSelector": {"no-such-node": "true"},
                }
            }
        },
    }
    env.batch.create_namespaced_job(env.ns, decoy)
    env.ftjs.create(remote_ftj("decoy"))
    s = wait_phase(env, wait_for, "decoy", "Failed")
    assert s["reason"] == "NameConflict" and "Job decoy-fetch already exists" in s["message"]
    job = env.batch.read_namespaced_job("decoy-fetch", env.ns)
    assert not job.metadata.owner_references and job.spec.template.spec.containers[0].image == "busybox"
