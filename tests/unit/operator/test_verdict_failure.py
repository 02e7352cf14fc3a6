"""A failed Job: deadline, OOM kill, deleted pod, the trainer's exit codes and messages."""

import pytest

from finetune_api.protocol import EXIT_CODE_REASONS, ExitCode
from finetune_operator.summaries import fmt_time
from support.status_objects import NOW, SCHEDULED, T_END, compute, cond, job, pod, summary_message


def test_a_failed_job_waits_briefly_for_its_pods_exit_status(ftj):
    failed = [{"type": "Failed", "reason": "BackoffLimitExceeded", "lastTransitionTime": fmt_time(NOW)}]
    r = compute(ftj, job(failed), pod("Running", scheduled=SCHEDULED, running=True))
    assert (r.status["phase"], r.status["reason"]) == ("Running", "Finishing")


def test_a_deleted_or_evicted_pod_is_named_as_such(ftj):
    failed = [{"type": "Failed", "reason": "BackoffLimitExceeded"}]
    gone = compute(ftj, job(failed), None).status
    assert (gone["phase"], gone["reason"]) == ("Failed", "PodDeleted")
    assert "was deleted (or evicted) before the trainer finished" in gone["message"]
    deleting = pod("Failed", scheduled=SCHEDULED, terminated={"exitCode": 143, "reason": "Error"})
    deleting["metadata"]["deletionTimestamp"] = T_END
    assert compute(ftj, job(failed), deleting).status["reason"] == "PodDeleted"
    evicted = pod("Failed", scheduled=SCHEDULED, terminated={"exitCode": 137, "reason": "Error"})
    evicted["status"]["conditions"].append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
        }
    )
    s = compute(ftj, job(failed), evicted).status
    assert s["reason"] == "PodDeleted" and "EvictionByEvictionAPI" in s["message"]


def test_a_log_tail_becomes_its_last_meaningful_line(ftj):
    tail = (
        'Traceback (most recent call last):\n  File "/opt/venv/bin/finetune-train", line 5, in <module>\n'
        "    from finetune_trainer.cli import main\nModuleNotFoundError: No module named 'finetune_trainer'\n"
    )
    p = pod("Failed", scheduled=SCHEDULED, terminated={"exitCode": 1, "reason": "Error", "message": tail})
    s = compute(ftj, job([{"type": "Failed", "reason": "BackoffLimitExceeded"}]), p).status
    assert s["message"] == "ModuleNotFoundError: No module named 'finetune_trainer'"
    assert cond(s, "Ready")["message"] == s["message"]


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5])
def test_exit_codes(ftj, code):
    msg = summary_message(
        outcome="failed",
        reason=EXIT_CODE_REASONS[code].value,
        message=f"data/train.jsonl line 7: field 'messages' missing ({code})",
    )
    p = pod("Failed", scheduled=SCHEDULED, terminated={"exitCode": code, "reason": "Error", "message": msg})
    r = compute(ftj, job([{"type": "Failed", "reason": "BackoffLimitExceeded"}]), p)
    s = r.status
    assert s["phase"] == "Failed"
    assert s["reason"] == EXIT_CODE_REASONS[code].value
    assert s["message"] == f"data/train.jsonl line 7: field 'messages' missing ({code})"
    assert cond(s, "Failed")["status"] == "True" and cond(s, "Stalled")["status"] == "True"
    assert cond(s, "Ready")["status"] == "False" and cond(s, "Ready")["reason"] == s["reason"]
    assert r.event[0] == "Warning"


def test_exit_code_mapping_names():
    assert EXIT_CODE_REASONS[ExitCode.INVALID_DATA] == "InvalidData"
    assert EXIT_CODE_REASONS[ExitCode.OUT_OF_MEMORY] == "OutOfMemory"


def test_exit_code_with_log_tail_message(ftj):
    p = pod(
        "Failed",
        scheduled=SCHEDULED,
        terminated={"exitCode": 3, "reason": "Error", "message": "Traceback...\nValueError: bad"},
    )
    s = compute(ftj, job([{"type": "Failed"}]), p).status
    assert s["reason"] == "InvalidData" and "ValueError: bad" in s["message"]


def test_unknown_exit_code(ftj):
    p = pod("Failed", scheduled=SCHEDULED, terminated={"exitCode": 139, "reason": "Error"})
    s = compute(ftj, job([{"type": "Failed"}]), p).status
    assert s["reason"] == "PodFailed" and "139" in s["message"]


def test_oom_killed(ftj):
    p = pod("Failed", scheduled=SCHEDULED, terminated={"exitCode": 137, "reason": "OOMKilled"})
    s = compute(ftj, job([{"type": "Failed"}]), p).status
    assert s["reason"] == "OOMKilled" and "16Gi" in s["message"]


def test_deadline_exceeded(ftj):
    ftj["spec"]["activeDeadlineSeconds"] = 60
    j = job(
        [{"type": "Failed", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]
    )
    s = compute(ftj, j, None).status
    assert s["phase"] == "Failed" and s["reason"] == "DeadlineExceeded" and "60" in s["message"]


def test_failure_target_counts_as_failed(ftj):
    j = job([{"type": "FailureTarget", "reason": "DeadlineExceeded"}])
    assert compute(ftj, j, None).status["reason"] == "DeadlineExceeded"


def test_a_nonzero_exit_with_a_success_summary_is_a_failure_without_its_metrics(ftj):
    msg = summary_message(outcome="succeeded", metrics={"evalLoss": 0.66})
    p = pod("Failed", scheduled=SCHEDULED, terminated={"exitCode": 1, "reason": "Error", "message": msg})
    s = compute(ftj, job([{"type": "Failed", "reason": "BackoffLimitExceeded"}]), p).status
    assert (s["phase"], s["reason"]) == ("Failed", "PodFailed")
    assert "exited with code 1 although its termination message claims success" in s["message"]
    assert "metrics" not in s and "{" not in s["message"]


def test_a_deadline_before_the_trainer_started_keeps_the_last_cause(ftj):
    ftj["spec"]["activeDeadlineSeconds"] = 600
    unschedulable = {"status": "False", "reason": "Unschedulable", "message": "0/3 nodes: Insufficient nvidia.com/gpu"}
    ftj["status"] = compute(ftj, job(active=1), pod("Pending", scheduled=unschedulable)).status
    assert ftj["status"]["reason"] == "Unschedulable"
    deadline = job([{"type": "Failed", "reason": "DeadlineExceeded", "message": "Job was active longer"}])
    s = compute(ftj, deadline, None).status
    assert (s["phase"], s["reason"]) == ("Failed", "DeadlineExceeded")
    assert s["message"].startswith(
        "the run exceeded activeDeadlineSeconds=600 before the trainer started; the last cause was Unschedulable: "
        "no node can run the trainer pod, which needs 2 nvidia.com/gpu"
    ), s["message"]
    assert "Insufficient nvidia.com/gpu" in s["message"] and "\n" not in s["message"]


def test_a_deadline_quotes_the_jobs_own_value(ftj):
    ftj["spec"]["activeDeadlineSeconds"] = 600
    deadline = job([{"type": "Failed", "reason": "DeadlineExceeded"}])
    deadline["spec"]["activeDeadlineSeconds"] = 120  # changed on the Job by hand
    s = compute(ftj, deadline, pod("Failed", scheduled=SCHEDULED)).status
    assert s["message"] == (
        "the run exceeded activeDeadlineSeconds=120 (the Job's; spec.activeDeadlineSeconds is 600) and was stopped"
    )


def test_a_pod_gone_before_it_was_seen_failing_is_still_named(ftj):
    ftj["status"] = {"phase": "Running", "reason": "Running", "podName": "demo-trainer-x7k2p"}
    s = compute(ftj, job([{"type": "Failed", "reason": "BackoffLimitExceeded"}]), None).status
    assert (s["phase"], s["reason"]) == ("Failed", "PodDeleted")
    assert s["message"].startswith("the trainer pod demo-trainer-x7k2p was deleted (or evicted)"), s["message"]
