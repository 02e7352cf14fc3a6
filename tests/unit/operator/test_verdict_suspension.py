"""Suspended and queued Jobs."""

from support.status_objects import SCHEDULED, compute, cond, job, pod


def test_suspended(ftj):
    ftj["spec"]["suspend"] = True
    s = compute(ftj, job(suspend=True, conditions=[{"type": "Suspended"}]), None).status
    assert s["phase"] == "Suspended" and cond(s, "Suspended")["status"] == "True"
    assert cond(s, "Reconciling")["status"] == "False" and cond(s, "Ready")["status"] == "False"
    assert compute(ftj, None, None).status["phase"] == "Suspended"
    # spec says suspend but the Job still runs: Suspended (the operator patches the Job)
    assert compute(ftj, job(active=1), pod("Running", running=True)).status["phase"] == "Suspended"


def test_resuming_and_queued(ftj):
    assert compute(ftj, job(suspend=True), None).status["reason"] == "Resuming"
    ftj["spec"]["scheduling"] = {"queueName": "q"}
    s = compute(ftj, job(suspend=True), None).status
    assert s["phase"] == "Pending" and s["reason"] == "Queued" and "q" in s["message"]


def test_a_suspend_the_operator_may_not_carry_out_says_so(ftj):
    ftj["spec"]["suspend"] = True
    refused = "jobs.batch is forbidden: the namespace is not opted in"
    r = compute(ftj, job(active=1), pod("Running", scheduled=SCHEDULED, running=True), patch_refused=refused)
    s = r.status
    assert (s["phase"], s["reason"]) == ("Running", "NotPermitted")
    assert s["message"] == (
        "spec.suspend is true but the operator may no longer change Job demo-trainer, which keeps running "
        f"(retrying every 60s): {refused}"
    )
    assert cond(s, "Stalled")["status"] == "True" and cond(s, "Suspended")["status"] == "False"
    assert r.requeue_after == 60
