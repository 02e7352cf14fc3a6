"""A completed Job: success only with the trainer's completion record."""

import datetime as dt

from finetune_api.protocol import success_note
from finetune_operator.runstatus import merge_patch
from finetune_operator.summaries import fmt_time
from support.status_objects import NOW, SCHEDULED, T_END, T_START, compute, cond, job, pod, summary_message


def test_succeeded_with_metrics_and_artifacts(ftj):
    msg = summary_message(
        outcome="succeeded",
        metrics={"evalLoss": 1.5, "baselineEvalLoss": 2.0},
        artifacts={"path": "/mnt/pvc/artifacts/team-a/demo/adapter", "sizeBytes": 1234, "sha256": "ab" * 32},
    )
    p = pod("Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0, "reason": "Completed", "message": msg})
    r = compute(ftj, job([{"type": "Complete"}], completionTime=T_END), p)
    s = r.status
    assert s["phase"] == "Succeeded" and s["reason"] == "Succeeded"
    assert cond(s, "Ready")["status"] == "True"
    assert cond(s, "Reconciling")["status"] == "False" and cond(s, "Stalled")["status"] == "False"
    assert cond(s, "Succeeded")["status"] == "True"
    assert s["metrics"] == {"evalLoss": 1.5, "baselineEvalLoss": 2.0}
    assert s["artifacts"] == {"pvc": "artifacts", "path": "team-a/demo/adapter", "sizeBytes": 1234, "sha256": "ab" * 32}
    assert s["startTime"] == T_START and s["completionTime"] == T_END
    assert s["durationSeconds"] == 1800.0 and s["gpuSeconds"] == 3600.0
    assert r.transitioned_to_final


SERVING = {
    "adapterUri": "pvc://artifacts/team-a/demo",
    "baseModel": "hf://HuggingFaceTB/SmolLM2-135M-Instruct",
    "taskType": "CAUSAL_LM",
    "loraRank": 16,
}


def test_the_trainers_serving_block_is_left_as_the_trainer_wrote_it(ftj):
    """status.serving is the trainer's (like status.plan): the operator's status write never touches it."""
    msg = summary_message(outcome="succeeded", metrics={"evalLoss": 1.0})
    p = pod("Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0, "reason": "Completed", "message": msg})
    stored = {**ftj, "status": {"phase": "Running", "serving": SERVING}}
    r = compute(stored, job([{"type": "Complete"}], completionTime=T_END), p)
    assert r.status["phase"] == "Succeeded" and "serving" not in r.status
    patch = merge_patch(stored["status"], r.status)
    assert patch is not None and "serving" not in patch


def test_a_successful_runs_warnings_end_its_message(ftj):
    note = success_note(["label 'rare' has 1 example"])
    msg = summary_message(outcome="succeeded", message=note, metrics={"evalLoss": 1.0})
    p = pod("Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0, "reason": "Completed", "message": msg})
    s = compute(ftj, job([{"type": "Complete"}], completionTime=T_END), p).status
    assert s["message"] == "the adapter is trained and saved; warning: label 'rare' has 1 example"


def test_exit_0_without_the_trainers_completion_record_is_not_a_success(ftj):
    p = pod("Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0, "message": "some log tail"})
    s = compute(ftj, job([{"type": "Complete"}], completionTime=T_END), p).status
    assert (s["phase"], s["reason"]) == ("Failed", "ResultMissing")
    assert "without the trainer's completion record" in s["message"]
    assert "artifacts" not in s and "metrics" not in s


def test_a_completed_job_waits_briefly_for_its_pods_final_state(ftj):
    """The Job's watch may deliver Complete before the Pod's watch delivers the terminated state."""
    just_now = fmt_time(NOW - dt.timedelta(seconds=5))
    r = compute(
        ftj, job([{"type": "Complete"}], completionTime=just_now), pod("Running", scheduled=SCHEDULED, running=True)
    )
    assert (r.status["phase"], r.status["reason"]) == ("Running", "Finishing") and 0 < r.requeue_after <= 30
    gone = compute(ftj, job([{"type": "Complete"}], completionTime=T_END), None).status
    assert (gone["phase"], gone["reason"]) == ("Failed", "ResultMissing") and "pod is gone" in gone["message"]
