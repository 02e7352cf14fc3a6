"""Knowing before a run whether it fits (issue 22), on the real node: its fake GPU advertises
4096 MiB in `nvidia.com/gpu.memory`, as NVIDIA's GPU feature discovery labels a real one. The
trainer finds no CUDA there, so the GPU's size reaches it only as the operator tells it
(FINETUNE_GPU_MEMORY_BYTES, from `resources.gpuProduct`) or as the operator checks the trainer's
plan against the node the pod was bound to.

- a plan too big for the asked-for GPU product: the trainer refuses before the model loads;
- `batchSize: auto`: the trainer plans for the product's 4 GiB and trains with what it chose;
- no product asked for: the operator compares `status.plan` with the node's label and ends the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from finetune_devcluster.node import GPU_MEMORY_MIB, GPU_PRODUCT, NODE_NAME
from support.e2e import Runs, assert_one_line, classification

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200), pytest.mark.usefixtures("operator_release")]
GPU_BYTES = GPU_MEMORY_MIB * 1024 * 1024
ON_THE_FAKE_GPU = {"gpus": 1, "gpuProduct": GPU_PRODUCT, "cpu": "1", "memory": "3Gi", "shmSize": "64Mi"}
ANY_GPU = {key: value for key, value in ON_THE_FAKE_GPU.items() if key != "gpuProduct"}
TOO_BIG = {"maxSteps": 12, "batchSize": 1024, "maxSeqLength": 512, "gradientCheckpointing": False}
"""About 40 GiB of activations for MiniLM: fits no 4 GiB GPU."""


def local_plan(body: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """`finetune-train plan` of the same FineTuneJob for the fake GPU's memory, on this machine."""
    manifest = tmp_path / f"{body['metadata']['name']}.yaml"
    manifest.write_text(yaml.safe_dump(body))
    done = subprocess.run(
        [sys.executable, "-m", "finetune_trainer", "plan", "--config", str(manifest), "--gpu-memory", str(GPU_BYTES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 14), done.stderr
    return json.loads(done.stdout)


def test_a_plan_too_big_for_the_gpu_product_fails_before_the_model_loads(
    kube_api: client.ApiClient, run_ns: dict[str, Any]
) -> None:
    runs = Runs(kube_api, run_ns["name"])
    runs.create(classification("too-big", training=TOO_BIG, resources=ON_THE_FAKE_GPU, backoffLimit=2))
    st = runs.wait("too-big", lambda s: s.get("phase") == "Failed", 600, "Failed")
    assert st["reason"] == "InsufficientGPUMemory", st
    assert "training.batchSize" in st["message"], st["message"]  # what would fit, in the message
    assert st["plan"]["fits"] is False and st["plan"]["gpuMemoryBytes"] == GPU_BYTES, st["plan"]
    # nothing was trained or evaluated, and the trainer said so itself (not the operator's check)
    assert "metrics" not in st and (st.get("progress") or {}).get("step", 0) == 0, st
    assert "its nvidia.com/gpu.memory label" not in st["message"], st["message"]
    job = client.BatchV1Api(kube_api).read_namespaced_job("too-big-trainer", run_ns["name"])
    # exit code 14 is not retried (podFailurePolicy), whatever backoffLimit allows
    assert job.status is not None and job.status.failed == 1, job.status
    assert_one_line(st)


def test_batch_size_auto_trains_with_the_micro_batch_planned_for_the_gpu(
    kube_api: client.ApiClient, run_ns: dict[str, Any], tmp_path: Path
) -> None:
    training = {**classification("x")["spec"]["training"], "maxSteps": 2, "maxSeqLength": 512}
    body = classification("auto", training={**training, "batchSize": "auto", "gradientAccumulationSteps": 16})
    # the micro-batch planned to fill 4 GiB of GPU takes about as much host memory on this CPU
    # (3Gi was OOMKilled in a CI run), plus the model and PyTorch's own
    body["spec"]["resources"] = {**ON_THE_FAKE_GPU, "memory": "8Gi"}
    expected = local_plan(body, tmp_path)
    runs = Runs(kube_api, run_ns["name"])
    runs.create(body)
    st = runs.wait("auto", lambda s: s.get("phase") in ("Succeeded", "Failed"), 900, "finished")
    assert st["phase"] == "Succeeded", st
    plan = st["plan"]
    assert plan["gpuMemoryBytes"] == GPU_BYTES and plan["fits"] is True, plan
    assert plan["requiredBytes"] <= GPU_BYTES, plan
    # the batch per optimizer step kept (4 x 16), split as the planner splits it for 4 GiB
    assert plan["microBatchSize"] * plan["gradientAccumulationSteps"] == 64, plan
    assert (plan["microBatchSize"], plan["gradientAccumulationSteps"]) == (
        expected["microBatchSize"],
        expected["gradientAccumulationSteps"],
    ), (plan, expected)


def test_the_operator_checks_the_plan_against_the_node_the_pod_was_bound_to(
    kube_api: client.ApiClient, run_ns: dict[str, Any], wait_for: Any
) -> None:
    """Without gpuProduct the trainer does not know which GPU it will get, so it plans with no
    limit; the operator reads the bound node's label and ends the run, suspending its Job."""
    runs = Runs(kube_api, run_ns["name"])
    runs.create(classification("any-gpu", training=TOO_BIG, resources=ANY_GPU))
    st = runs.wait("any-gpu", lambda s: s.get("phase") == "Failed", 600, "Failed")
    assert st["reason"] == "InsufficientGPUMemory", st
    assert f"node {NODE_NAME} has 4.0 GiB" in st["message"], st["message"]
    assert "nvidia.com/gpu.memory" in st["message"], st["message"]
    assert "metrics" not in st, st
    # the operator suspends the Job right after it writes the final status: wait for it
    batch = client.BatchV1Api(kube_api)

    def suspended() -> bool:
        return batch.read_namespaced_job("any-gpu-trainer", run_ns["name"]).spec.suspend is True

    wait_for(suspended, 60, "the Job suspended", namespace=run_ns["name"])
    assert_one_line(st)
