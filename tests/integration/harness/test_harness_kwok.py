"""kwok GPU nodes: the real scheduler places GPU pods; the sim.finetune.dev annotations steer them."""

from __future__ import annotations

import json

from finetune_devcluster import GPU_TOLERATION
from support.harness import get_json, gpu_job, job_condition


def _pod(kubectl, namespace: str, job: str) -> dict | None:
    pods = get_json(kubectl, "pods", "-l", f"job-name={job}", namespace=namespace)
    return pods["items"][0] if pods and pods["items"] else None


def test_gpu_job_is_scheduled_on_a_gpu_node_and_completes(kubectl, namespace, wait_for) -> None:
    kubectl("create", "-f", "-", input=json.dumps(gpu_job("one-gpu")), namespace=namespace)
    job = wait_for(
        lambda: (j := get_json(kubectl, "job/one-gpu", namespace=namespace)) and job_condition(j, "Complete") and j,
        60,
        "job/one-gpu to complete",
        namespace,
    )
    assert job["status"]["succeeded"] == 1
    pod = _pod(kubectl, namespace, "one-gpu")
    assert pod["spec"]["nodeName"] in {"gpu-a100-0", "gpu-a100-1", "gpu-t4-0"}
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_too_many_gpus_stays_pending_with_failed_scheduling(kubectl, namespace, wait_for) -> None:
    kubectl("create", "-f", "-", input=json.dumps(gpu_job("sixteen", gpus=16)), namespace=namespace)

    def failed_scheduling() -> list[dict]:
        events = get_json(kubectl, "events", "--field-selector=reason=FailedScheduling", namespace=namespace)
        return [e for e in events["items"] if "Insufficient nvidia.com/gpu" in e["message"]]

    event = wait_for(failed_scheduling, 30, "a FailedScheduling event", namespace)[0]
    assert event["involvedObject"]["kind"] == "Pod"
    pod = _pod(kubectl, namespace, "sixteen")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


def test_gpu_product_node_selector_lands_on_t4(kubectl, namespace, wait_for) -> None:
    job = gpu_job(
        "t4",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-Tesla-T4"},
        annotations={"sim.finetune.dev/duration": "10m"},
    )
    kubectl("create", "-f", "-", input=json.dumps(job), namespace=namespace)
    pod = wait_for(
        lambda: (p := _pod(kubectl, namespace, "t4")) and p["status"].get("phase") == "Running" and p,
        30,
        "the T4 pod to run",
        namespace,
    )
    assert pod["spec"]["nodeName"] == "gpu-t4-0"
    assert pod["status"]["containerStatuses"][0]["state"]["running"]


def test_simulated_exit_code_and_termination_message(kubectl, namespace, wait_for) -> None:
    annotations = {
        "sim.finetune.dev/exit-code": "3",
        "sim.finetune.dev/duration": "1s",
        "sim.finetune.dev/termination-message": '{"error": "boom"}',
    }
    kubectl("create", "-f", "-", input=json.dumps(gpu_job("exit3", annotations=annotations)), namespace=namespace)
    wait_for(
        lambda: (j := get_json(kubectl, "job/exit3", namespace=namespace)) and job_condition(j, "Failed"),
        60,
        "job/exit3 to fail",
        namespace,
    )
    pod = _pod(kubectl, namespace, "exit3")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert json.loads(terminated["message"]) == {"error": "boom"}


def test_simulated_oom(kubectl, namespace, wait_for) -> None:
    kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps(gpu_job("oom", annotations={"sim.finetune.dev/oom": "true"})),
        namespace=namespace,
    )
    pod = wait_for(
        lambda: (p := _pod(kubectl, namespace, "oom")) and p["status"].get("phase") == "Failed" and p,
        30,
        "the OOM pod to fail",
        namespace,
    )
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_never_start_shows_image_pull_backoff(kubectl, namespace, wait_for) -> None:
    job = gpu_job("nostart", annotations={"sim.finetune.dev/never-start": "true"})
    kubectl("create", "-f", "-", input=json.dumps(job), namespace=namespace)

    def waiting_reason() -> dict | None:
        pod = _pod(kubectl, namespace, "nostart")
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting", {})
        return waiting if waiting.get("reason") == "ImagePullBackOff" else None

    waiting = wait_for(waiting_reason, 30, "ImagePullBackOff", namespace)
    assert "Back-off pulling image" in waiting["message"]
    assert _pod(kubectl, namespace, "nostart")["status"]["phase"] == "Pending"
    kubectl("delete", "job/nostart", "--wait=false", namespace=namespace)
    wait_for(lambda: _pod(kubectl, namespace, "nostart") is None, 30, "the deleted Job's pod to go", namespace)


def test_simulated_nodes_take_only_pods_that_ask_for_them(kubectl, namespace, wait_for) -> None:
    """kwok nodes run no containers: a pod that does not tolerate their taint (the chart's operator,
    a real trainer) is never placed there."""
    job = gpu_job("no-sim", gpus=0)
    job["spec"]["template"]["spec"]["tolerations"] = [GPU_TOLERATION]  # not the kwok taint
    kubectl("create", "-f", "-", input=json.dumps(job), namespace=namespace)

    def unschedulable() -> str | None:
        pod = _pod(kubectl, namespace, "no-sim")
        cond = next(
            (c for c in ((pod or {}).get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"), {}
        )
        return cond.get("message") if cond.get("reason") == "Unschedulable" else None

    message = wait_for(unschedulable, 60, "the pod to be unschedulable", namespace)
    assert "4 node(s) had untolerated taint(s)" in message, message  # the four kwok nodes: their taint
