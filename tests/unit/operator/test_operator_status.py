import datetime as dt
import json

import pytest

from finetune_api.protocol import EXIT_CODE_REASONS, ExitCode, TrainerSummary
from finetune_operator import status as st

NOW = dt.datetime(2025, 1, 1, 1, 0, 0, tzinfo=dt.UTC)
T0 = "2025-01-01T00:00:00Z"
T_START = "2025-01-01T00:10:00Z"
T_END = "2025-01-01T00:40:00Z"


def job(conditions=(), suspend=False, **status):
    return {
        "metadata": {"name": "demo-trainer", "uid": "j1", "creationTimestamp": T0},
        "spec": {"suspend": suspend},
        "status": {"conditions": [dict(c, status=c.get("status", "True")) for c in conditions], **status},
    }


def pod(
    phase="Pending",
    *,
    scheduled=None,
    waiting=None,
    running=False,
    terminated=None,
    node="gpu-a100-0",
    name="demo-trainer-abcde",
    created=T0,
):
    conds = []
    if scheduled is not None:
        conds.append({"type": "PodScheduled", **scheduled})
    cs = {"name": "trainer", "image": "trainer:test", "state": {}}
    if waiting:
        cs["state"]["waiting"] = waiting
    if running:
        cs["state"]["running"] = {"startedAt": T_START}
    if terminated:
        cs["state"]["terminated"] = {"startedAt": T_START, "finishedAt": T_END, **terminated}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node if (scheduled or {}).get("status") == "True" else None},
        "status": {"phase": phase, "conditions": conds, "containerStatuses": [cs]},
    }


SCHEDULED = {"status": "True", "lastTransitionTime": T0}


def compute(ftj, j=None, p=None, **kw):
    return st.compute(ftj, j, p, now=NOW, **kw)


def cond(status, ctype):
    return next(c for c in status["conditions"] if c["type"] == ctype)


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


def test_running(ftj):
    s = compute(ftj, job(active=1), pod("Running", scheduled=SCHEDULED, running=True)).status
    assert s["phase"] == "Running" and s["jobName"] == "demo-trainer" and s["podName"] == "demo-trainer-abcde"
    assert s["startTime"] == T_START
    assert cond(s, "Scheduled")["status"] == "True" and "gpu-a100-0" in cond(s, "Scheduled")["message"]
    assert "completionTime" not in s


def summary_message(**kw):
    return TrainerSummary(**kw).to_termination_message()


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


def test_exit_0_without_the_trainers_completion_record_is_not_a_success(ftj):
    p = pod("Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0, "message": "some log tail"})
    s = compute(ftj, job([{"type": "Complete"}], completionTime=T_END), p).status
    assert (s["phase"], s["reason"]) == ("Failed", "ResultMissing")
    assert "without the trainer's completion record" in s["message"]
    assert "artifacts" not in s and "metrics" not in s


def test_a_completed_job_waits_briefly_for_its_pods_final_state(ftj):
    """The Job's watch may deliver Complete before the Pod's watch delivers the terminated state."""
    just_now = st.fmt_time(NOW - dt.timedelta(seconds=5))
    r = compute(
        ftj, job([{"type": "Complete"}], completionTime=just_now), pod("Running", scheduled=SCHEDULED, running=True)
    )
    assert (r.status["phase"], r.status["reason"]) == ("Running", "Finishing") and 0 < r.requeue_after <= 30
    gone = compute(ftj, job([{"type": "Complete"}], completionTime=T_END), None).status
    assert (gone["phase"], gone["reason"]) == ("Failed", "ResultMissing") and "pod is gone" in gone["message"]


def test_a_failed_job_waits_briefly_for_its_pods_exit_status(ftj):
    failed = [{"type": "Failed", "reason": "BackoffLimitExceeded", "lastTransitionTime": st.fmt_time(NOW)}]
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


def test_a_missing_claim_is_named_not_blamed_on_gpus(ftj):
    msg = (
        '0/5 nodes are available: persistentvolumeclaim "artifacts" not found. preemption: 0/5 nodes are '
        "available: 5 Preemption is not helpful for scheduling."
    )
    p = pod("Pending", scheduled={"status": "False", "reason": "Unschedulable", "message": msg})
    s = compute(ftj, job(active=1), p).status
    assert s["reason"] == "Unschedulable"
    assert s["message"].startswith("PersistentVolumeClaim artifacts not found in the namespace")
    assert "GPU" not in s["message"] and "nvidia.com/gpu" not in s["message"].split("(scheduler")[0]


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


def test_unschedulable_names_gpu(ftj):
    ftj["spec"]["resources"] = {"gpus": 16, "gpuProduct": "NVIDIA-H100"}
    p = pod(
        "Pending",
        scheduled={
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector.",
        },
    )
    r = compute(ftj, job(active=1), p)
    s = r.status
    assert s["phase"] == "Pending" and s["reason"] == "Unschedulable"
    assert "16 nvidia.com/gpu" in s["message"] and "NVIDIA-H100" in s["message"] and "0/4 nodes" in s["message"]
    assert cond(s, "Stalled")["status"] == "True" and cond(s, "Reconciling")["status"] == "False"
    assert cond(s, "Scheduled")["status"] == "False" and cond(s, "Scheduled")["reason"] == "Unschedulable"
    assert r.event[0] == "Warning"


def test_unschedulable_for_missing_claims_names_them_not_the_gpu(ftj):
    p = pod(
        "Pending",
        scheduled={
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/4 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
        },
    )
    s = compute(ftj, job(active=1), p).status
    assert s["reason"] == "Unschedulable" and "nvidia.com/gpu" not in s["message"]
    assert "PersistentVolumeClaims (artifacts, data, models) exist and are bound" in s["message"]
    assert "unbound immediate" in s["message"]


def test_image_pull_stalled_then_failed(ftj):
    waiting = {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}
    sched = {"status": "True", "lastTransitionTime": "2025-01-01T00:58:00Z"}
    r = compute(ftj, job(active=1), pod("Pending", scheduled=sched, waiting=waiting), image_pull_grace_seconds=300)
    assert r.status["phase"] == "Pending" and r.status["reason"] == "ImagePullFailed"
    assert cond(r.status, "Stalled")["status"] == "True"
    assert r.requeue_after == pytest.approx(180)
    assert not r.suspend_job
    sched_old = {"status": "True", "lastTransitionTime": "2025-01-01T00:50:00Z"}
    r = compute(ftj, job(active=1), pod("Pending", scheduled=sched_old, waiting=waiting), image_pull_grace_seconds=300)
    assert r.status["phase"] == "Failed" and r.status["reason"] == "ImagePullFailed"
    assert r.suspend_job and r.requeue_after is None


def test_container_config_error_is_stalled(ftj):
    w = {"reason": "CreateContainerConfigError", "message": 'secret "hf" not found'}
    s = compute(ftj, job(active=1), pod("Pending", scheduled=SCHEDULED, waiting=w)).status
    assert s["phase"] == "Pending" and s["reason"] == "ContainerConfigError" and "hf" in s["message"]
    assert cond(s, "Stalled")["status"] == "True"


def test_job_deleted(ftj):
    ftj["status"] = {"phase": "Running", "jobName": "demo-trainer"}
    s = compute(ftj, None, None).status
    assert s["phase"] == "Failed" and s["reason"] == "JobDeleted" and "demo-trainer" in s["message"]
    # ...but not right after the operator created it (the watch has not delivered it yet)
    assert compute(ftj, None, None, job_expected=True).status["reason"] == "Creating"


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
    later = st.compute(
        ftj, job(active=1), pod("Running", scheduled=SCHEDULED, running=True), now=NOW + dt.timedelta(minutes=5)
    ).status
    assert later == first
    assert st.merge_patch(first, later) is None
    done = st.compute(
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
    patch = st.merge_patch(old, new)
    assert patch == {"phase": "Succeeded", "podName": None}


def test_latest_pod():
    a = pod(name="a", created="2025-01-01T00:00:00Z")
    b = pod(name="b", created="2025-01-01T00:05:00Z")
    assert st.latest_pod([a, b])["metadata"]["name"] == "b"
    assert st.latest_pod([]) is None


def test_conditions_are_valid_metav1(ftj):
    from finetune_api.resource import FineTuneJobStatus

    for j, p in [
        (None, None),
        (job([{"type": "Complete"}]), pod("Succeeded", scheduled=SCHEDULED, terminated={"exitCode": 0})),
    ]:
        FineTuneJobStatus.model_validate(compute(ftj, j, p).status)


def test_summaries_round_trip():
    assert st.parse_summary(json.dumps({"outcome": "failed", "reason": "InvalidData"})).reason == "InvalidData"
    assert st.parse_summary("not json") is None
    assert st.parse_summary(None) is None


def test_invalid_spec_output_path_dots(ftj):
    ftj["spec"]["output"]["path"] = "runs/../../x"
    assert compute(ftj, None, None).status["reason"] == "InvalidSpec"


def test_a_nonzero_exit_with_a_success_summary_is_a_failure_without_its_metrics(ftj):
    msg = summary_message(outcome="succeeded", metrics={"evalLoss": 0.66})
    p = pod("Failed", scheduled=SCHEDULED, terminated={"exitCode": 1, "reason": "Error", "message": msg})
    s = compute(ftj, job([{"type": "Failed", "reason": "BackoffLimitExceeded"}]), p).status
    assert (s["phase"], s["reason"]) == ("Failed", "PodFailed")
    assert "exited with code 1 although its termination message claims success" in s["message"]
    assert "metrics" not in s and "{" not in s["message"]
