"""The status as a whole: sticky final phases, invalid specs, conditions, merge patches."""

import datetime as dt

from finetune_operator import runstatus
from finetune_operator.runstatus import merge_patch
from support.status_objects import NOW, SCHEDULED, compute, cond, job, pod, summary_message


def test_a_final_phase_the_running_job_contradicts_is_corrected(ftj):
    """A status forged by someone else (say a trainer token) does not stick while the Job runs."""
    ftj["status"] = {"phase": "Failed", "reason": "TrainerError", "message": "forged", "jobName": "demo-trainer"}
    s = compute(ftj, job(active=1), pod("Running", scheduled=SCHEDULED, running=True)).status
    assert (s["phase"], s["reason"]) == ("Running", "Running")
    recorded = {
        "phase": "Succeeded",
        "reason": "Succeeded",
        "message": "done",
        "jobName": "demo-trainer",
        "metrics": {"evalLoss": 1.0},
    }
    ftj["status"] = recorded
    kept = compute(ftj, job([{"type": "Complete"}]), None).status  # the pod is gone: the record stands
    assert kept["metrics"] == {"evalLoss": 1.0} and kept["phase"] == "Succeeded"


def test_final_is_sticky(ftj):
    msg = summary_message(outcome="succeeded", metrics={"evalLoss": 1.0})
    p = pod("Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0, "message": msg})
    first = compute(ftj, job([{"type": "Complete"}]), p).status
    ftj["status"] = {**first, "progress": {"step": 10}}
    ftj["metadata"]["generation"] = 2
    r = compute(ftj, None, None)  # Job removed by its TTL
    assert r.status["phase"] == "Succeeded" and r.status["metrics"] == {"evalLoss": 1.0}
    assert r.status["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in r.status["conditions"])
    assert "progress" not in r.status
    assert r.event is None and not r.transitioned_to_final


def test_invalid_spec(ftj):
    ftj["spec"]["training"] = {"epochs": 1, "maxSteps": 5}
    r = compute(ftj, None, None)
    assert r.status["phase"] == "Failed" and r.status["reason"] == "InvalidSpec"
    assert "epochs" in r.status["message"]


def test_invalid_spec_pvc_escape(ftj):
    ftj["spec"]["dataset"]["source"] = "pvc://data/../../etc/passwd"
    assert compute(ftj, None, None).status["reason"] == "InvalidSpec"


def test_last_transition_time_preserved(ftj):
    first = compute(ftj, job(active=1), pod("Running", scheduled=SCHEDULED, running=True)).status
    ftj["status"] = first
    later = runstatus.compute(
        ftj, job(active=1), pod("Running", scheduled=SCHEDULED, running=True), now=NOW + dt.timedelta(minutes=5)
    ).status
    assert later == first
    assert merge_patch(first, later) is None
    done = runstatus.compute(
        ftj,
        job([{"type": "Complete"}]),
        pod(
            "Succeeded",
            scheduled=SCHEDULED,
            terminated={"exitCode": 0, "message": summary_message(outcome="succeeded")},
        ),
        now=NOW + dt.timedelta(minutes=10),
    ).status
    assert cond(done, "Ready")["lastTransitionTime"] == "2025-01-01T01:10:00Z"
    assert cond(done, "Stalled")["lastTransitionTime"] == cond(first, "Stalled")["lastTransitionTime"]


def test_merge_patch_never_touches_progress():
    old = {"phase": "Running", "progress": {"step": 3}, "podName": "p"}
    new = {"phase": "Succeeded"}
    patch = merge_patch(old, new)
    assert patch == {"phase": "Succeeded", "podName": None}


def test_conditions_are_valid_metav1(ftj):
    from finetune_api.resource import FineTuneJobStatus

    for j, p in [
        (None, None),
        (job([{"type": "Complete"}]), pod("Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0})),
    ]:
        FineTuneJobStatus.model_validate(compute(ftj, j, p).status)


def test_invalid_spec_output_path_dots(ftj):
    ftj["spec"]["output"]["path"] = "runs/../../x"
    assert compute(ftj, None, None).status["reason"] == "InvalidSpec"
