"""Before the trainer Job: the run's downloads, their failures and status.sources."""

import pytest

from finetune_api.protocol import FetchRecord
from finetune_api.runconfig import fetch_plans
from finetune_operator import builders
from finetune_operator.runstatus import FetchSeen
from support.status_objects import NOW, SCHEDULED, T0, compute, cond, job, summary_message

SHA = "cd" * 32


@pytest.fixture
def remote(ftj):
    ftj["spec"]["model"] = {"source": "hf://acme/tiny-llm", "tokenSecretRef": {"name": "hf"}}
    ftj["spec"]["dataset"] = {
        "source": "s3://bucket-1/train.jsonl",
        "format": "chat",
        "credentialsSecretRef": {"name": "s3"},
    }
    return ftj


def fetch_job(conditions=()):
    j = job(conditions)
    j["metadata"]["name"] = "demo-fetch"
    return j


def fetch_pod(phase="Running", states=None, scheduled=SCHEDULED):
    return {
        "metadata": {"name": "demo-fetch-xyz", "creationTimestamp": T0},
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": phase,
            "conditions": [{"type": "PodScheduled", **scheduled}],
            "containerStatuses": [{"name": n, "state": s} for n, s in (states or {}).items()],
        },
    }


def record(source, cached=False, **kw):
    return FetchRecord(
        source=source,
        path="/x",
        file_count=1,
        size_bytes=1234,
        sha256=SHA,
        verified_with="s3-checksum-sha256",
        bytes_downloaded=0 if cached else 1234,
        seconds=1.5,
        cached=cached,
        **kw,
    ).to_termination_message()


def seen(ftj, j=None, p=None, cache="model-cache"):
    plans = tuple(fetch_plans(builders.parse_spec(ftj), cache is not None))
    return FetchSeen(plans, j, p, cache)


def test_pending_fetching_until_the_fetch_job_exists_and_runs(remote):
    s = compute(remote, fetch=seen(remote)).status
    assert (s["phase"], s["reason"]) == ("Pending", "Fetching")
    assert "hf://acme/tiny-llm" in s["message"] and "s3://bucket-1/train.jsonl" in s["message"]
    running = fetch_pod(states={"model": {"running": {}}, "dataset": {"running": {}}})
    s = compute(remote, fetch=seen(remote, fetch_job(), running)).status
    assert (s["phase"], s["reason"]) == ("Pending", "Fetching") and "on node node-1" in s["message"]
    assert cond(s, "Reconciling")["status"] == "True"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (7, "SourceNotFound"),
        (8, "SourceForbidden"),
        (9, "RevisionNotFound"),
        (10, "ChecksumMismatch"),
        (11, "DownloadFailed"),
        (12, "CacheFull"),
    ],
)
def test_a_failed_download_fails_the_run_with_its_reason_and_field(remote, code, reason):
    message = summary_message(outcome="failed", reason=reason, message=f"s3://bucket-1/train.jsonl: {reason} here")
    states = {
        "model": {"terminated": {"exitCode": 0, "message": record("hf://acme/tiny-llm")}},
        "dataset": {"terminated": {"exitCode": code, "message": message}},
    }
    r = compute(remote, fetch=seen(remote, fetch_job([{"type": "Failed"}]), fetch_pod("Failed", states)))
    s = r.status
    assert (s["phase"], s["reason"]) == ("Failed", reason)
    assert s["message"] == f"dataset.source s3://bucket-1/train.jsonl: s3://bucket-1/train.jsonl: {reason} here"
    assert "\n" not in s["message"] and r.transitioned_to_final
    assert "jobName" not in s  # no trainer Job was ever made
    # what did succeed is recorded
    assert [x["field"] for x in s["sources"]] == ["model.source"]


def test_a_download_failure_is_seen_before_the_job_fails(remote):
    states = {"dataset": {"terminated": {"exitCode": 10, "message": "checksum"}}, "model": {"running": {}}}
    s = compute(remote, fetch=seen(remote, fetch_job(), fetch_pod("Running", states))).status
    assert (s["phase"], s["reason"]) == ("Failed", "ChecksumMismatch") and s["message"].endswith(": checksum")


def test_a_missing_credentials_secret_fails_after_the_grace(remote):
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s3" not found'}}
    recent = {"status": "True", "lastTransitionTime": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}
    p = fetch_pod("Pending", {"model": {"running": {}}, "dataset": waiting}, scheduled=recent)
    s = compute(remote, fetch=seen(remote, fetch_job(), p)).status
    assert (s["phase"], s["reason"]) == ("Pending", "ContainerConfigError")
    p = fetch_pod("Pending", {"model": {"running": {}}, "dataset": waiting})
    s = compute(remote, fetch=seen(remote, fetch_job(), p)).status
    assert (s["phase"], s["reason"]) == ("Failed", "SecretNotFound")
    assert s["message"] == (
        "dataset.source s3://bucket-1/train.jsonl: Secret s3 (spec.dataset.credentialsSecretRef) does not exist "
        "in the namespace"
    )


def test_an_unschedulable_fetch_pod_names_the_scheduler(remote):
    p = fetch_pod(
        "Pending",
        scheduled={
            "status": "False",
            "reason": "Unschedulable",
            "message": 'persistentvolumeclaim "model-cache" not found',
        },
    )
    s = compute(remote, fetch=seen(remote, fetch_job(), p)).status
    assert (s["phase"], s["reason"]) == ("Pending", "Unschedulable") and "model-cache" in s["message"]
    assert cond(s, "Stalled")["status"] == "True"


def test_done_downloads_are_recorded_and_the_trainer_job_comes_next(remote):
    states = {
        "model": {"terminated": {"exitCode": 0, "message": record("hf://acme/tiny-llm", cached=True, commit="c0ffee")}},
        "dataset": {"terminated": {"exitCode": 0, "message": record("s3://bucket-1/train.jsonl")}},
    }
    s = compute(remote, fetch=seen(remote, fetch_job([{"type": "Complete"}]), fetch_pod("Succeeded", states))).status
    assert (s["phase"], s["reason"]) == ("Pending", "Creating")
    model, data = s["sources"]
    assert model["field"] == "model.source" and model["cached"] is True and model["bytesDownloaded"] == 0
    assert model["commit"] == "c0ffee" and model["location"].startswith("model-cache:acme-tiny-llm-")
    assert data == {
        "field": "dataset.source",
        "uri": "s3://bucket-1/train.jsonl",
        "sha256": SHA,
        "sizeBytes": 1234,
        "fileCount": 1,
        "verifiedWith": "s3-checksum-sha256",
        "cached": False,
        "bytesDownloaded": 1234,
        "seconds": 1.5,
        "location": "artifacts:.finetune-fetch/" + data["location"].split("/", 1)[1],
    }
    # later (the fetch Job removed by its TTL, the trainer running): the recorded sources stay
    remote["status"] = {"sources": s["sources"]}
    later = compute(remote, job(active=1), None, fetch=seen(remote)).status
    assert later["sources"] == s["sources"] and later["reason"] != "Fetching"


def test_without_a_cache_claim_the_model_is_located_on_the_output_claim(remote):
    states = {"model": {"terminated": {"exitCode": 0, "message": record("hf://acme/tiny-llm")}}}
    s = compute(remote, fetch=seen(remote, fetch_job(), fetch_pod("Running", states), cache=None)).status
    assert s["sources"][0]["location"].startswith("artifacts:.finetune-fetch/acme-tiny-llm-")


def test_a_name_conflict_on_the_fetch_job_wins(remote):
    from finetune_operator.refusals import ChildrenBlocked

    blocked = ChildrenBlocked("NameConflict", "Job demo-fetch already exists", final=True)
    s = compute(remote, blocked=blocked, fetch=seen(remote)).status
    assert (s["phase"], s["reason"]) == ("Failed", "NameConflict")


def test_plans_follow_the_cache_setting(remote):
    (model, _) = seen(remote).plans
    assert model.in_cache
    (model, _) = seen(remote, cache=None).plans
    assert not model.in_cache
