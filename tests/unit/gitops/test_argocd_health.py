"""docs/argocd/health.lua, the Argo CD health check of FineTuneJob, run with a real Lua (lupa).

Argo CD runs the script with the live object as the global `obj` (JSON arrays as 1-based
tables) and reads the returned table's `status` and `message`; these tests do the same.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import lupa  # a Lua runtime from PyPI (dev dependency): runs the health check as Argo CD would
import pytest

from finetune_api.resource import FineTuneJobStatus

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "docs" / "argocd" / "health.lua"
GITOPS_DOC = ROOT / "docs" / "gitops.md"
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
TS = "2026-01-02T03:00:00Z"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return result["status"], result["message"]


def ftj(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "demo", "namespace": "team-a", "generation": generation},
        "spec": {
            "model": {"source": "builtin:smollm2-135m-instruct"},
            "dataset": {"source": "pvc://data/train.jsonl"},
            "output": {"pvc": "artifacts"},
            "resources": {"gpus": 1},
        },
    }
    if status is not None:
        FineTuneJobStatus.model_validate(status)  # the samples are real status shapes
        obj["status"] = status
    return obj


def cond(ctype: str, status: str, reason: str = "R", message: str = "") -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": TS,
        "observedGeneration": 1,
    }


# --- hand-written statuses -------------------------------------------------------------------------

SAMPLES = {
    "no status yet": (None, "Progressing", "Waiting for the operator"),
    "pending": (
        {
            "phase": "Pending",
            "reason": "Creating",
            "message": "creating the trainer Job",
            "observedGeneration": 1,
            "conditions": [cond("Reconciling", "True", "Creating"), cond("Stalled", "False", "Creating")],
        },
        "Progressing",
        "Creating: creating the trainer Job",
    ),
    "running with progress": (
        {
            "phase": "Running",
            "reason": "Running",
            "message": "training on node gpu-0",
            "observedGeneration": 1,
            "progress": {"step": 42, "totalSteps": 100, "percent": 42},
        },
        "Progressing",
        "Running: training on node gpu-0 (42% of training steps done)",
    ),
    "succeeded": (
        {
            "phase": "Succeeded",
            "reason": "Succeeded",
            "message": "the adapter is trained and saved",
            "observedGeneration": 1,
            "conditions": [cond("Ready", "True", "Succeeded")],
        },
        "Healthy",
        "Succeeded: the adapter is trained and saved",
    ),
    "suspended": (
        {"phase": "Suspended", "reason": "Suspended", "message": "suspended by spec.suspend", "observedGeneration": 1},
        "Suspended",
        "suspended by spec.suspend",
    ),
    "failed": (
        {
            "phase": "Failed",
            "reason": "OOMKilled",
            "message": "the trainer ran out of memory",
            "observedGeneration": 1,
            "conditions": [cond("Stalled", "True", "OOMKilled", "the trainer ran out of memory")],
        },
        "Degraded",
        "OOMKilled: the trainer ran out of memory",
    ),
    "failed without message": ({"phase": "Failed", "observedGeneration": 1}, "Degraded", "failed"),
    "stalled while pending": (
        {
            "phase": "Pending",
            "reason": "Unschedulable",
            "message": "no node can run the trainer pod",
            "observedGeneration": 1,
            "conditions": [
                cond("Reconciling", "False", "Unschedulable"),
                cond("Stalled", "True", "Unschedulable", "no node has 8 free GPUs"),
            ],
        },
        "Degraded",
        "Unschedulable: no node has 8 free GPUs",
    ),
    "stalled false": (
        {"phase": "Running", "observedGeneration": 1, "conditions": [cond("Stalled", "False")]},
        "Progressing",
        "Running",
    ),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_health_of_sample_statuses(name):
    status, expected, message = SAMPLES[name]
    got_status, got_message = health(ftj(status))
    assert got_status == expected
    assert message in got_message


def test_status_older_than_the_spec_is_progressing():
    done = SAMPLES["succeeded"][0]
    assert health(ftj(done, generation=1))[0] == "Healthy"
    status, message = health(ftj(done, generation=2))  # e.g. spec.suspend changed, not yet observed
    assert status == "Progressing" and "generation 2" in message
    no_generation = {k: v for k, v in done.items() if k != "observedGeneration"}
    assert health(ftj(no_generation, generation=2))[0] == "Progressing"


# --- statuses computed by the operator's own status logic -------------------------------------------


def _job(conditions: list[dict[str, Any]] | None = None, suspend: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo-trainer", "namespace": "team-a"},
        "spec": {"suspend": suspend},
        "status": {
            "conditions": [
                {"type": c[0], "status": "True", "reason": c[1], "lastTransitionTime": TS} for c in conditions or []
            ]
        },
    }


def _pod(phase: str, scheduled: dict[str, Any] | None = None) -> dict[str, Any]:
    conditions = [{"type": "PodScheduled", "lastTransitionTime": TS, **(scheduled or {"status": "True"})}]
    state: dict[str, Any] = {}
    if phase == "Running":
        state = {"running": {"startedAt": TS}}
    elif phase == "Succeeded":  # the trainer's completion record in the termination message
        state = {
            "terminated": {
                "exitCode": 0,
                "startedAt": TS,
                "finishedAt": TS,
                "message": '{"outcome": "succeeded", "metrics": {"evalLoss": 1.0}}',
            }
        }
    return {
        "metadata": {"name": "demo-trainer-abcde", "namespace": "team-a", "creationTimestamp": TS},
        "spec": {"nodeName": None if phase == "Pending" else "gpu-0"},
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"name": "trainer", "state": state}],
        },
    }


COMPUTED = {
    "just created": (None, None, {}, "Progressing"),
    "running": (_job(), _pod("Running"), {}, "Progressing"),
    "unschedulable": (
        _job(),
        _pod(
            "Pending",
            {
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/4 nodes are available: insufficient nvidia.com/gpu",
            },
        ),
        {},
        "Degraded",
    ),
    "suspended": (_job(suspend=True), None, {"suspend": True}, "Suspended"),
    "complete": (_job([("Complete", "Completed")]), _pod("Succeeded"), {}, "Healthy"),
    "deadline exceeded": (_job([("Failed", "DeadlineExceeded")]), None, {}, "Degraded"),
}


@pytest.mark.parametrize("name", list(COMPUTED))
def test_health_of_statuses_the_operator_computes(name):
    from finetune_operator.runstatus import compute

    job, pod, spec_patch, expected = COMPUTED[name]
    obj = ftj(None)
    obj["spec"].update(spec_patch)
    result = compute(obj, job, pod, now=NOW, job_expected=job is None)
    obj["status"] = result.status
    got, message = health(obj)
    assert got == expected, (result.status, message)
    if expected == "Degraded":
        assert message and message != "The fine-tuning run failed"


# --- the docs carry the same script ------------------------------------------------------------------


def test_gitops_doc_embeds_the_script_in_argocd_cm():
    """docs/gitops.md shows argocd-cm with the script under the FineTuneJob key, unchanged."""
    import yaml

    doc = GITOPS_DOC.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    cms = [yaml.safe_load(b) for b in blocks if "resource.customizations.health.finetune.dev_FineTuneJob" in b]
    assert len(cms) == 1, "docs/gitops.md needs one argocd-cm block with the FineTuneJob health check"
    cm = cms[0]
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert cm["data"]["resource.customizations.health.finetune.dev_FineTuneJob"] == SCRIPT.read_text()
