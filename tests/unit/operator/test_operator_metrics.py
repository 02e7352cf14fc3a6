"""Per-FineTuneJob training series for Prometheus: set from the status, removed with the object."""

import datetime as dt

from prometheus_client import REGISTRY

from finetune_operator.metrics import JobMetrics

KEY = ("team-a", "metrics-demo")
NOW = dt.datetime(2025, 1, 1, 2, 0, tzinfo=dt.UTC)


def sample(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": KEY[0], "name": KEY[1]})


def test_progress_and_gpu_hours_are_exported_then_dropped_with_the_job():
    jobs = JobMetrics()
    status = {
        "phase": "Running",
        "startTime": "2025-01-01T01:00:00Z",
        "progress": {"percent": 40, "step": 40, "loss": 0.5, "tokensPerSecond": 1234.5, "etaSeconds": 90},
    }
    jobs.set(KEY, status, gpus=2, now=NOW)
    assert sample("finetune_job_progress_ratio") == 0.4 and sample("finetune_job_step") == 40
    assert sample("finetune_job_train_loss") == 0.5 and sample("finetune_job_tokens_per_second") == 1234.5
    assert sample("finetune_job_eta_seconds") == 90
    assert sample("finetune_job_eval_loss") is None  # not evaluated yet: no series, not a zero
    assert sample("finetune_job_gpu_hours") == 2.0  # 2 GPUs for an hour
    assert REGISTRY.get_sample_value("finetune_jobs", {"phase": "Running"}) >= 1
    jobs.set(KEY, {**status, "phase": "Succeeded", "gpuSeconds": 3600.0}, gpus=2, now=NOW)
    assert sample("finetune_job_gpu_hours") == 1.0  # the recorded figure wins once final
    jobs.forget(KEY)
    assert sample("finetune_job_step") is None and sample("finetune_job_gpu_hours") is None
