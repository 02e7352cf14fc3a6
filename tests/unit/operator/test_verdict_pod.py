"""A running Job seen through its pod: scheduling, image pulls, config errors, running."""

import pytest

from support.status_objects import SCHEDULED, T_START, compute, cond, job, pod


def test_running(ftj):
    s = compute(ftj, job(active=1), pod("Running", scheduled=SCHEDULED, running=True)).status
    assert s["phase"] == "Running" and s["jobName"] == "demo-trainer" and s["podName"] == "demo-trainer-abcde"
    assert s["startTime"] == T_START
    assert cond(s, "Scheduled")["status"] == "True" and "gpu-a100-0" in cond(s, "Scheduled")["message"]
    assert "completionTime" not in s


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
    w = {"reason": "CreateContainerConfigError", "message": "container has runAsNonRoot and image will run as root"}
    s = compute(ftj, job(active=1), pod("Pending", scheduled=SCHEDULED, waiting=w)).status
    assert s["phase"] == "Pending" and s["reason"] == "ContainerConfigError" and "runAsNonRoot" in s["message"]
    assert cond(s, "Stalled")["status"] == "True"


@pytest.mark.parametrize(
    "kubelet_message, expected",
    [
        (
            'secret "hf" not found',
            "Secret hf (spec.model.tokenSecretRef) does not exist in the namespace: create it or fix "
            "spec.model.tokenSecretRef.name",
        ),
        (
            "couldn't find key token in Secret team-a/hf",
            "Secret hf (spec.model.tokenSecretRef) has no key token: add that key or fix spec.model.tokenSecretRef.key",
        ),
    ],
    ids=["secret", "key"],
)
def test_a_missing_secret_fails_in_seconds_with_its_own_reason(ftj, kubelet_message, expected):
    ftj["spec"]["model"]["tokenSecretRef"] = {"name": "hf"}
    w = {"reason": "CreateContainerConfigError", "message": kubelet_message}
    just = {"status": "True", "lastTransitionTime": "2025-01-01T00:59:55Z"}  # 5 s before NOW
    early = compute(ftj, job(active=1), pod("Pending", scheduled=just, waiting=w))
    assert (early.status["phase"], early.status["reason"], early.status["message"]) == (
        "Pending",
        "ContainerConfigError",
        expected,
    )
    assert early.requeue_after == pytest.approx(5.0) and not early.suspend_job
    later = compute(ftj, job(active=1), pod("Pending", scheduled=SCHEDULED, waiting=w))
    assert (later.status["phase"], later.status["reason"], later.status["message"]) == (
        "Failed",
        "SecretNotFound",
        expected,
    )
    assert later.suspend_job and later.transitioned_to_final
    # the Job is suspended, not finished: the recorded failure stands
    ftj["status"] = later.status
    again = compute(ftj, job(active=0, suspend=True), None).status
    assert (again["phase"], again["reason"]) == ("Failed", "SecretNotFound")


def test_a_pod_that_cannot_mount_its_volumes_says_so(ftj):
    p = pod("Pending", scheduled=SCHEDULED, waiting={"reason": "ContainerCreating"})
    problem = 'MountVolume.SetUp failed for volume "pvc-0": mount failed: exit status 32'
    s = compute(ftj, job(active=1), p, mount_problem=problem).status
    assert (s["phase"], s["reason"]) == ("Pending", "VolumeMountFailed")
    assert s["message"] == f"the trainer pod cannot mount its volumes on node gpu-a100-0: {problem}"
    assert cond(s, "Stalled")["status"] == "True"
