"""The operator (a real subprocess under its least-privilege ServiceAccount) against the real API
server, with kwok simulating the trainer pods (steered by sim.finetune.dev/* pod annotations)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from support.operator import (
    SIMULATED,
    TRAINER_CLUSTER_ROLE,
    Env,
    Ftj,
    assert_never_forbidden,
    launch_operator,
    make_namespace,
    minimal_ftj,
    sim,
    summary_json,
    wait_status,
)

pytestmark = pytest.mark.timeout(180)

SUMMARY_OK = summary_json(
    outcome="succeeded",
    metrics={"baselineEvalLoss": 2.5, "evalLoss": 1.25, "perplexity": 3.49},
    artifacts={"path": "/mnt/pvc/artifacts/runs/ok/adapter", "sizeBytes": 4096, "sha256": "0f" * 32},
)

# name -> (spec overrides, expected phase, expected reason, text expected in the message)
SCENARIOS: dict[str, tuple[dict[str, Any], str, str, str]] = {
    **{
        f"exit-{code}": (
            {
                "podAnnotations": sim(
                    exit_code=str(code),
                    termination_message=summary_json(
                        outcome="failed", reason=reason, message=f"{reason}: simulated failure {code}"
                    ),
                )
            },
            "Failed",
            reason,
            f"simulated failure {code}",
        )
        for code, reason in ((2, "InvalidConfig"), (3, "InvalidData"), (4, "ModelNotFound"), (5, "OutOfMemory"))
    },
    "exit-1": (
        {
            "podAnnotations": sim(
                exit_code="1",
                termination_message=summary_json(
                    outcome="failed",
                    reason="TrainerError",
                    message="RuntimeError: CUDA error: device-side assert triggered",
                ),
            )
        },
        "Failed",
        "TrainerError",
        "device-side assert",
    ),
    # no summary (the trainer crashed before writing one): the log tail is the message
    "crash": (
        {"podAnnotations": sim(exit_code="139", termination_message="Fatal Python error: Segmentation fault")},
        "Failed",
        "PodFailed",
        "exited with code 139 (Error): Fatal Python error: Segmentation fault",
    ),
    # passes the CRD schema, refused by the API server's Pod validation (In needs values)
    "invalid-spec": (
        {
            "scheduling": {
                **SIMULATED,
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]
                        }
                    }
                },
            }
        },
        "Failed",
        "InvalidSpec",
        "the API server refused the trainer pod",
    ),
    # the pod exits 0 but never wrote the trainer's completion record: not a success
    "exit-0-no-record": (
        {"podAnnotations": sim(exit_code="0")},
        "Failed",
        "ResultMissing",
        "without the trainer's completion record",
    ),
    # admission refuses the pod: at once, with the API server's words
    "no-priority-class": (
        {"scheduling": {**SIMULATED, "priorityClassName": "not-there"}},
        "Failed",
        "PodRejected",
        "no PriorityClass with name not-there",
    ),
    # a missing claim is named, not blamed on GPUs
    "missing-claim": (
        {"output": {"pvc": "no-such-claim"}},
        "Pending",
        "Unschedulable",
        "PersistentVolumeClaim no-such-claim not found",
    ),
    "oom": ({"podAnnotations": sim(oom="true")}, "Failed", "OOMKilled", "memory limit (16Gi)"),
    "image-pull": ({"podAnnotations": sim(never_start="true")}, "Failed", "ImagePullFailed", "cannot pull image"),
    "deadline": (
        {"activeDeadlineSeconds": 3, "podAnnotations": sim(duration="120s")},
        "Failed",
        "DeadlineExceeded",
        "activeDeadlineSeconds=3",
    ),
    "no-gpu-count": ({"resources": {"gpus": 16}}, "Pending", "Unschedulable", "16 nvidia.com/gpu"),
    # the deadline of a run that never started keeps why it never started
    "deadline-unschedulable": (
        {"resources": {"gpus": 16}, "activeDeadlineSeconds": 10},
        "Failed",
        "DeadlineExceeded",
        "the run exceeded activeDeadlineSeconds=10 before the trainer started; the last cause was Unschedulable: "
        "no node can run the trainer pod, which needs 16 nvidia.com/gpu",
    ),
    "no-gpu-product": (
        {"resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100"}},
        "Pending",
        "Unschedulable",
        "NVIDIA-H100",
    ),
}


@pytest.fixture(scope="module")
def env(
    cluster: Any, kubectl: Any, kube_api: client.ApiClient, crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    """One namespace and operator for the scenario tests; every scenario's FineTuneJob is created
    up front so that they run concurrently."""
    ns = make_namespace(kubectl, "ftj-scenarios")
    workdir = tmp_path_factory.mktemp("operator")
    op = launch_operator(cluster, kubectl, ns, workdir, "--image-pull-grace", "4")
    op.wait_ready()
    ftjs = Ftj(client.CustomObjectsApi(kube_api), kube_api, ns)
    ftjs.create(
        minimal_ftj(
            "ok",
            podAnnotations=sim(duration="2s", termination_message=SUMMARY_OK),
            output={"pvc": "artifacts", "path": "runs/ok"},
            resources={"gpus": 2},
        )
    )
    for name, (spec, *_rest) in SCENARIOS.items():
        ftjs.create(minimal_ftj(name, **spec))
    yield Env(ns, ftjs, op)
    code = op.stop()
    print(f"--- operator log (exit {code})\n{op.logs()[-6000:]}")
    kubectl("delete", "namespace", ns, "--wait=false", check=False)
    # every scenario above (creation, refusals, status, events, suspend, deletion, the finalizer)
    # ran under exactly the chart's RBAC rules: none of the operator's requests was refused
    assert_never_forbidden(op)


def cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_success_creates_children_and_reports(env: Env, wait_for: Any, kubectl: Any) -> None:
    s = wait_status(env, wait_for, "ok", "Succeeded")
    ns = env.ns
    core, rbac = client.CoreV1Api(env.ftjs.kube_api), client.RbacAuthorizationV1Api(env.ftjs.kube_api)
    cm = core.read_namespaced_config_map("ok-config", ns)
    config = json.loads(cm.data["config.json"])
    assert config["output"]["dir"] == "/mnt/pvc/artifacts/runs/ok"
    assert core.read_namespaced_service_account("ok-trainer", ns)
    binding = rbac.read_namespaced_role_binding("ok-trainer", ns)
    assert (binding.role_ref.kind, binding.role_ref.name) == ("ClusterRole", TRAINER_CLUSTER_ROLE)
    assert not rbac.list_namespaced_role(ns, label_selector="finetune.dev/finetunejob").items  # no Roles
    jobs = env.ftjs.jobs("ok")
    assert [j.metadata.name for j in jobs] == ["ok-trainer"]
    job = jobs[0]
    assert job.metadata.owner_references[0].kind == "FineTuneJob"
    assert job.spec.backoff_limit == 0 and job.spec.template.spec.restart_policy == "Never"
    pods = core.list_namespaced_pod(ns, label_selector="finetune.dev/finetunejob=ok").items
    assert pods and pods[0].spec.node_name.startswith("gpu-")
    assert pods[0].spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"
    # status
    assert s["reason"] == "Succeeded" and s["jobName"] == "ok-trainer" and s["podName"] == pods[0].metadata.name
    assert s["metrics"] == {"baselineEvalLoss": 2.5, "evalLoss": 1.25, "perplexity": 3.49}
    assert s["artifacts"] == {"pvc": "artifacts", "path": "runs/ok/adapter", "sizeBytes": 4096, "sha256": "0f" * 32}
    assert s["durationSeconds"] >= 1 and s["gpuSeconds"] == pytest.approx(2 * s["durationSeconds"])
    assert s["startTime"] and s["completionTime"] and s["observedGeneration"] == 1
    assert cond(s, "Ready")["status"] == "True" and cond(s, "Scheduled")["status"] == "True"
    assert cond(s, "Reconciling")["status"] == "False" and cond(s, "Stalled")["status"] == "False"
    # kstatus / kubectl wait
    kubectl("wait", "--for=condition=Ready", "ftj/ok", "--timeout=20s", namespace=ns)
    # no kopf bookkeeping in spec or status; annotations carry the finetune.dev prefix
    obj = env.ftjs.get("ok")
    assert "kopf" not in obj["status"]
    assert not any(k.startswith("kopf.zalando.org") for k in obj["metadata"].get("annotations", {}))
    assert not obj["metadata"].get("finalizers")  # retention Retain: nothing to clean up, no finalizer
    # an Event per phase transition the status went through (a burst of events can make the first
    # status written already Running: phases are not invented for the Events)
    items = json.loads(
        kubectl("get", "events", "--field-selector", "involvedObject.name=ok", "-o", "json", namespace=ns).stdout
    )["items"]
    phases = [e["message"].split(":", 1)[0] for e in items if e["involvedObject"]["kind"] == "FineTuneJob"]
    assert "Succeeded" in phases and set(phases) <= {"Pending", "Running", "Succeeded"}, phases
    assert len(phases) == len(set(phases)), phases  # one per transition, none repeated
    warnings = [e for e in items if e["involvedObject"]["kind"] == "FineTuneJob" and e["type"] != "Normal"]
    assert not warnings, [(e["reason"], e["message"]) for e in warnings]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_failure_reasons(env: Env, wait_for: Any, name: str) -> None:
    _spec, phase, reason, text = SCENARIOS[name]
    s = wait_status(env, wait_for, name, phase, reason, timeout=90)
    assert text in s["message"], s["message"]
    stalled = cond(s, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == reason
    assert cond(s, "Ready")["status"] == "False"
    if phase == "Failed":
        assert cond(s, "Failed")["status"] == "True"
        assert s["completionTime"]
    if reason == "Unschedulable":
        assert cond(s, "Scheduled")["status"] == "False"
        assert cond(s, "Reconciling")["status"] == "False"
    if name == "image-pull":
        job = env.ftjs.jobs(name)[0]
        assert job.spec.suspend is True  # the pull is stopped
    if reason == "InvalidSpec":
        assert env.ftjs.jobs(name) == []  # nothing is created for a spec that cannot run
    assert len(env.ftjs.jobs(name)) <= 1


def test_image_pull_is_stalled_before_failing(env: Env, wait_for: Any, kubectl: Any) -> None:
    """Decision: a failing pull is Pending + Stalled for --image-pull-grace, then Failed (Job suspended)."""
    wait_status(env, wait_for, "image-pull", "Failed", "ImagePullFailed")
    items = json.loads(
        kubectl(
            "get", "events", "--field-selector", "involvedObject.name=image-pull", "-o", "json", namespace=env.ns
        ).stdout
    )["items"]
    messages = " | ".join(e["message"] for e in items if e["reason"] == "ImagePullFailed")
    assert "Pending:" in messages and "Failed:" in messages, messages


@pytest.mark.adversarial
def test_job_deleted_is_reported_not_recreated(env: Env, wait_for: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(minimal_ftj("job-deleted", podAnnotations=sim(duration="120s")))
    wait_status(env, wait_for, "job-deleted", "Running")
    ftjs.batch.delete_namespaced_job("job-deleted-trainer", env.ns, propagation_policy="Background")
    s = wait_status(env, wait_for, "job-deleted", "Failed", "JobDeleted")
    assert "job-deleted-trainer" in s["message"]
    # a later event (a spec change: generation 2) is reconciled, and still nothing is recreated
    ftjs.patch("job-deleted", {"spec": {"suspend": True}})
    wait_for(lambda: ftjs.status("job-deleted").get("observedGeneration") == 2, timeout=30, namespace=env.ns)
    assert ftjs.jobs("job-deleted") == []


@pytest.mark.adversarial
def test_suspend_and_resume(env: Env, wait_for: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(minimal_ftj("pausable", suspend=True, podAnnotations=sim(duration="3s")))
    s = wait_status(env, wait_for, "pausable", "Suspended")
    assert cond(s, "Suspended")["status"] == "True"
    wait_for(lambda: ftjs.jobs("pausable"), timeout=30, namespace=env.ns)
    assert ftjs.jobs("pausable")[0].spec.suspend is True
    assert not ftjs.core.list_namespaced_pod(env.ns, label_selector="finetune.dev/finetunejob=pausable").items
    ftjs.patch("pausable", {"spec": {"suspend": False}})
    wait_status(env, wait_for, "pausable", "Succeeded", timeout=60)
    assert len(ftjs.jobs("pausable")) == 1


@pytest.mark.adversarial
def test_suspend_running_job(env: Env, wait_for: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(minimal_ftj("mid-run", podAnnotations=sim(duration="120s")))
    wait_status(env, wait_for, "mid-run", "Running")
    ftjs.patch("mid-run", {"spec": {"suspend": True}})
    wait_status(env, wait_for, "mid-run", "Suspended")
    wait_for(
        lambda: (
            all(
                p.metadata.deletion_timestamp
                for p in ftjs.core.list_namespaced_pod(env.ns, label_selector="finetune.dev/finetunejob=mid-run").items
            )
            or None
        ),
        timeout=30,
        namespace=env.ns,
    )
    ftjs.patch("mid-run", {"spec": {"suspend": False}})
    wait_status(env, wait_for, "mid-run", "Running", timeout=60)
    assert len(ftjs.jobs("mid-run")) == 1


@pytest.mark.adversarial
def test_delete_garbage_collects_children(env: Env, wait_for: Any) -> None:
    ftjs = env.ftjs
    ftjs.create(minimal_ftj("doomed", podAnnotations=sim(duration="120s")))
    wait_status(env, wait_for, "doomed", "Running")
    ftjs.delete("doomed")
    core, rbac = ftjs.core, client.RbacAuthorizationV1Api(ftjs.kube_api)
    sel = "finetune.dev/finetunejob=doomed"

    def gone() -> bool:
        return not (
            ftjs.batch.list_namespaced_job(env.ns, label_selector=sel).items
            or core.list_namespaced_config_map(env.ns, label_selector=sel).items
            or core.list_namespaced_service_account(env.ns, label_selector=sel).items
            or rbac.list_namespaced_role_binding(env.ns, label_selector=sel).items
        )

    wait_for(gone, timeout=60, namespace=env.ns, description="children garbage-collected")
    assert ftjs.get("doomed") is None


def test_retention_delete_removes_output_then_object(env: Env, wait_for: Any, kubectl: Any) -> None:
    """output.retention: Delete: the finalizer holds the FineTuneJob until a cleanup Job has removed
    the output directory; the default (Retain) keeps it (see the success test: no finalizer)."""
    ftjs = env.ftjs
    ftjs.create(
        minimal_ftj("scratch", output={"pvc": "artifacts", "retention": "Delete"}, podAnnotations=sim(duration="1s"))
    )
    wait_status(env, wait_for, "scratch", "Succeeded")
    assert ftjs.get("scratch")["metadata"]["finalizers"] == ["finetune.dev/cleanup"]
    ftjs.delete("scratch")
    wait_for(
        lambda: ftjs.get("scratch") is None,
        timeout=60,
        namespace=env.ns,
        description="FineTuneJob released by its finalizer",
        objects=("finetunejobs", "jobs", "pods"),
    )
    events = kubectl(
        "get", "events", "--field-selector", "involvedObject.name=scratch", "-o", "json", namespace=env.ns
    ).stdout
    # kwok runs no command: its cleanup pod reports nothing, which the operator says (the real
    # removal of one run's files is in tests/unit/trainer/test_run_record.py and the e2e test)
    messages = [e["message"] for e in json.loads(events)["items"] if e["reason"] in ("OutputDeleted", "OutputKept")]
    assert messages == ["the cleanup Job scratch-cleanup completed without reporting what it removed"], messages


def test_printer_columns_and_category(env: Env, wait_for: Any, kubectl: Any) -> None:
    wait_status(env, wait_for, "ok", "Succeeded")
    table = kubectl("get", "ftj", "ok", "-o", "wide", namespace=env.ns).stdout
    header = table.splitlines()[0].split()
    assert header == [
        "NAME", "PHASE", "MODEL", "METHOD", "NODES", "PROGRESS", "LOSS", "GPU-GIB", "REASON", "JOB", "AGE"
    ], header  # fmt: skip
    assert "Succeeded" in table and "ok-trainer" in table
    assert "ok" in kubectl("get", "finetune", namespace=env.ns).stdout  # the category


def test_metrics_health_and_logs(env: Env, wait_for: Any) -> None:
    wait_status(env, wait_for, "ok", "Succeeded")
    text = env.op.metrics()
    assert 'finetune_jobs{phase="Succeeded"}' in text
    assert "finetune_run_duration_seconds_bucket" in text
    assert "finetune_gpu_hours_total" in text
    assert "finetune_reconcile_duration_seconds" in text
    assert "finetune_reconcile_errors_total" in text
    assert "finetune_operator_leader 1.0" in text
    writes = float(
        next(line.split()[-1] for line in text.splitlines() if line.startswith("finetune_status_writes_total"))
    )
    assert writes >= 1
    assert env.op.http(env.op.health_port, "/healthz")[0] == 200
    assert env.op.http(env.op.health_port, "/readyz")[0] == 200
    # structured logs: one JSON object per line
    records = [json.loads(line) for line in env.op.logs().splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("finetunejob") == f"{env.ns}/ok" and r.get("phase") == "Succeeded" for r in records)


def test_a_deadline_changed_on_the_job_by_hand_is_the_one_quoted(env: Env, wait_for: Any, kubectl: Any) -> None:
    env.ftjs.create(minimal_ftj("hand-deadline", activeDeadlineSeconds=600, podAnnotations=sim(duration="300s")))
    wait_status(env, wait_for, "hand-deadline", "Running")
    kubectl(
        "patch", "job", "hand-deadline-trainer", "--type=merge", "-p", '{"spec":{"activeDeadlineSeconds":3}}',
        namespace=env.ns,
    )  # fmt: skip
    s = wait_status(env, wait_for, "hand-deadline", "Failed", "DeadlineExceeded")
    assert s["message"].startswith(
        "the run exceeded activeDeadlineSeconds=3 (the Job's; spec.activeDeadlineSeconds is 600) and was stopped"
    ), s["message"]


def test_retries_only_where_a_retry_can_help(env: Env, wait_for: Any) -> None:
    """backoffLimit 2: bad data (exit 3) fails the Job at its first pod (podFailurePolicy FailJob);
    an unexpected crash (exit 1) is retried twice."""
    failure = {
        "podAnnotations": sim(
            exit_code="3",
            termination_message=summary_json(outcome="failed", reason="InvalidData", message="train.jsonl:3: bad"),
        )
    }
    crash = {
        "podAnnotations": sim(
            exit_code="1",
            termination_message=summary_json(outcome="failed", reason="TrainerError", message="RuntimeError: boom"),
        )
    }
    env.ftjs.create(minimal_ftj("retry-data", backoffLimit=2, **failure))
    env.ftjs.create(minimal_ftj("retry-crash", backoffLimit=2, **crash))
    s = wait_status(env, wait_for, "retry-data", "Failed", "InvalidData")
    assert s["message"] == "train.jsonl:3: bad"
    s = wait_status(env, wait_for, "retry-crash", "Failed", "TrainerError", timeout=90)
    assert s["message"] == "RuntimeError: boom"
    pods = {
        name: len(env.ftjs.core.list_namespaced_pod(env.ns, label_selector=f"job-name={name}-trainer").items)
        for name in ("retry-data", "retry-crash")
    }
    assert pods == {"retry-data": 1, "retry-crash": 3}, pods
    job = env.ftjs.batch.read_namespaced_job("retry-data-trainer", env.ns)
    assert next(c for c in job.status.conditions if c.type == "Failed").reason == "PodFailurePolicy"


def test_a_memory_plan_larger_than_the_nodes_gpu_ends_the_run(env: Env, wait_for: Any) -> None:
    """The trainer reports its plan (here: written as it would); the operator reads the GPU memory
    label of the node the pod runs on (a T4: 15360 MiB) and ends the run, suspending its Job."""
    env.ftjs.create(
        minimal_ftj(
            "too-big-plan", resources={"gpus": 1, "gpuProduct": "NVIDIA-Tesla-T4"}, podAnnotations=sim(duration="300s")
        )
    )
    wait_status(env, wait_for, "too-big-plan", "Running")
    plan = {
        "predictedPeakBytes": 20 * 2**30,
        "predictedPeakGiB": 20.0,
        "requiredBytes": 23 * 2**30,
        "tokensPerStep": 4096,
        "microBatchSize": 4,
        "gradientAccumulationSteps": 1,
    }
    env.ftjs.api.patch_namespaced_custom_object_status(
        "finetune.dev", "v1alpha1", env.ns, "finetunejobs", "too-big-plan", {"status": {"plan": plan}}
    )
    s = wait_status(env, wait_for, "too-big-plan", "Failed", "InsufficientGPUMemory", timeout=30)
    assert s["message"] == (
        "the trainer's memory plan needs 23.0 GiB of GPU memory (predicted peak 20.0 GiB) but a GPU of node gpu-t4-0 "
        "has 15.0 GiB (its nvidia.com/gpu.memory label)"
    )
    wait_for(
        lambda: env.ftjs.batch.read_namespaced_job("too-big-plan-trainer", env.ns).spec.suspend,
        timeout=30,
        namespace=env.ns,
        description="the Job suspended",
    )
