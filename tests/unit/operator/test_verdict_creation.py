"""No Job yet, or no longer: creating, blocked, deleted."""

from support.status_objects import compute, cond


def test_no_job_yet_is_pending_creating(ftj):
    r = compute(ftj)
    s = r.status
    assert s["phase"] == "Pending" and s["reason"] == "Creating"
    assert s["observedGeneration"] == 1
    assert cond(s, "Ready")["status"] == "False"
    assert cond(s, "Reconciling")["status"] == "True"
    assert cond(s, "Stalled")["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in s["conditions"])
    assert r.event == ("Normal", "Creating", "Pending: creating the trainer Job")


def test_job_deleted(ftj):
    ftj["status"] = {"phase": "Running", "jobName": "demo-trainer"}
    s = compute(ftj, None, None).status
    assert s["phase"] == "Failed" and s["reason"] == "JobDeleted" and "demo-trainer" in s["message"]
    # ...but not right after the operator created it (the watch has not delivered it yet)
    assert compute(ftj, None, None, job_expected=True).status["reason"] == "Creating"
