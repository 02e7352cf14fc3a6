"""A trainer's memory plan that does not fit its node's GPU ends the run in seconds."""

from support.status_objects import SCHEDULED, compute, cond, job, pod

GIB = 1024**3
PLAN = {
    "predictedPeakBytes": int(8.1 * GIB),
    "predictedPeakGiB": 8.1,
    "requiredBytes": int(9.66 * GIB),
    "tokensPerStep": 131072,
    "microBatchSize": 4,
    "gradientAccumulationSteps": 1,
    "suggestion": "training.batchSize 1 with gradientAccumulationSteps 4 fits (3.1 GiB)",
}


def test_a_plan_larger_than_the_nodes_gpu_fails_the_run_and_suspends_the_job(ftj):
    ftj["status"] = {"phase": "Running", "reason": "Running", "plan": PLAN}
    running = pod("Running", scheduled=SCHEDULED, running=True)
    r = compute(ftj, job(active=1), running, node_gpu_memory_bytes=4 * GIB)
    s = r.status
    assert (s["phase"], s["reason"]) == ("Failed", "InsufficientGPUMemory")
    assert s["message"] == (
        "the trainer's memory plan needs 9.7 GiB of GPU memory (predicted peak 8.1 GiB) but a GPU of node gpu-a100-0 "
        "has 4.0 GiB (its nvidia.com/gpu.memory label): training.batchSize 1 with gradientAccumulationSteps 4 fits "
        "(3.1 GiB)"
    )
    assert r.suspend_job and cond(s, "Stalled")["status"] == "True"
    # the suspended Job does not undo the verdict
    ftj["status"] = {**s, "plan": PLAN}
    again = compute(ftj, job(active=0, suspend=True), None, node_gpu_memory_bytes=4 * GIB).status
    assert (again["phase"], again["reason"]) == ("Failed", "InsufficientGPUMemory")


def test_a_plan_that_fits_or_no_label_leaves_the_run_running(ftj):
    ftj["status"] = {"phase": "Running", "reason": "Running", "plan": PLAN}
    running = pod("Running", scheduled=SCHEDULED, running=True)
    for gpu in (80 * GIB, None):
        s = compute(ftj, job(active=1), running, node_gpu_memory_bytes=gpu).status
        assert (s["phase"], s["reason"]) == ("Running", "Running"), gpu


def test_a_plan_the_trainer_itself_found_too_big_is_left_to_the_trainer(ftj):
    """With a known GPU (resources.gpuProduct, or CUDA) the trainer refuses by itself with exit 14 and
    its own message; the operator does not race it by suspending the Job."""
    ftj["status"] = {
        "phase": "Running",
        "reason": "Running",
        "plan": {**PLAN, "fits": False, "gpuMemoryBytes": 4 * GIB},
    }
    running = pod("Running", scheduled=SCHEDULED, running=True)
    r = compute(ftj, job(active=1), running, node_gpu_memory_bytes=4 * GIB)
    assert (r.status["phase"], r.status["reason"]) == ("Running", "Running")
    assert not r.suspend_job
