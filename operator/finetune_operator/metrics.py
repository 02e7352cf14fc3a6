"""Prometheus metrics (prometheus-client), served on ``--metrics-port`` at /metrics."""

from __future__ import annotations

import datetime as dt
from collections import Counter as _Tally
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from finetune_api.resource import Phase

NAMESPACE = "finetune"

JOBS = Gauge(f"{NAMESPACE}_jobs", "FineTuneJobs known to this operator, by phase.", ["phase"])
RUN_DURATION = Histogram(
    f"{NAMESPACE}_run_duration_seconds",
    "Wall time of finished runs (trainer start to end).",
    ["outcome"],
    buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400, float("inf")),
)
GPU_HOURS = Counter(f"{NAMESPACE}_gpu_hours_total", "GPU hours consumed by finished runs.", ["outcome"])
RECONCILE_ERRORS = Counter(f"{NAMESPACE}_reconcile_errors_total", "Failed reconcile steps.", ["step"])
RECONCILE_LATENCY = Histogram(
    f"{NAMESPACE}_reconcile_duration_seconds",
    "Time of one reconcile step.",
    ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf")),
)
API_REQUESTS = Counter(
    f"{NAMESPACE}_operator_api_requests_total",
    "HTTP requests the reconciler sent to the "
    "Kubernetes API (creates, status patches, reads on conflicts; kopf's own watches and Events "
    "are not counted).",
    ["method"],
)
STATUS_WRITES = Counter(f"{NAMESPACE}_status_writes_total", "FineTuneJob status patches written.")
LEADER = Gauge(f"{NAMESPACE}_operator_leader", "1 while this replica holds the leader Lease.")


JOB_LABELS = ("namespace", "name")
JOB_PROGRESS = Gauge(f"{NAMESPACE}_job_progress_ratio", "Training steps done / planned, per FineTuneJob.", JOB_LABELS)
JOB_STEP = Gauge(f"{NAMESPACE}_job_step", "Optimizer steps done, per FineTuneJob.", JOB_LABELS)
JOB_LOSS = Gauge(f"{NAMESPACE}_job_train_loss", "Latest training loss, per FineTuneJob.", JOB_LABELS)
JOB_EVAL_LOSS = Gauge(f"{NAMESPACE}_job_eval_loss", "Latest evaluation loss, per FineTuneJob.", JOB_LABELS)
JOB_TOKENS = Gauge(f"{NAMESPACE}_job_tokens_per_second", "Training throughput, per FineTuneJob.", JOB_LABELS)
JOB_ETA = Gauge(f"{NAMESPACE}_job_eta_seconds", "Estimated seconds until training ends, per FineTuneJob.", JOB_LABELS)
JOB_GPU_HOURS = Gauge(
    f"{NAMESPACE}_job_gpu_hours", "GPU hours used so far (GPUs x run time), per FineTuneJob.", JOB_LABELS
)
# status.progress field -> gauge (and a factor)
_PROGRESS_GAUGES = (
    ("percent", JOB_PROGRESS, 0.01),
    ("step", JOB_STEP, 1.0),
    ("loss", JOB_LOSS, 1.0),
    ("evalLoss", JOB_EVAL_LOSS, 1.0),
    ("tokensPerSecond", JOB_TOKENS, 1.0),
    ("etaSeconds", JOB_ETA, 1.0),
)


class JobMetrics:
    """The by-phase count of FineTuneJobs and each one's training series; a deleted FineTuneJob's
    series are removed."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}

    def set(self, key: tuple[str, str], status: dict[str, Any], gpus: int, now: dt.datetime) -> None:
        """Export ``status`` (as stored, with the trainer's ``progress``) of the FineTuneJob ``key``."""
        phase = status.get("phase")
        if phase is None:
            self._phases.pop(key, None)
        else:
            self._phases[key] = phase
        self._export_phases()
        progress = status.get("progress") or {}
        for field, gauge, factor in _PROGRESS_GAUGES:
            value = progress.get(field)
            if isinstance(value, (int, float)):
                gauge.labels(*key).set(value * factor)
            else:
                _remove(gauge, key)
        gpu_seconds = status.get("gpuSeconds")
        if gpu_seconds is None and status.get("startTime") and gpus:
            started = dt.datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
            gpu_seconds = max(0.0, (now - started).total_seconds()) * gpus
        if gpu_seconds is not None:
            JOB_GPU_HOURS.labels(*key).set(gpu_seconds / 3600.0)

    def forget(self, key: tuple[str, str]) -> None:
        self._phases.pop(key, None)
        self._export_phases()
        for gauge in (*(g for _, g, _ in _PROGRESS_GAUGES), JOB_GPU_HOURS):
            _remove(gauge, key)

    def _export_phases(self) -> None:
        tally = _Tally(self._phases.values())
        for phase in Phase:
            JOBS.labels(phase=phase.value).set(tally.get(phase.value, 0))


def _remove(gauge: Gauge, key: tuple[str, str]) -> None:
    try:
        gauge.remove(*key)
    except KeyError:
        pass


def observe_final(outcome: str, duration_seconds: float | None, gpu_seconds: float | None) -> None:
    if duration_seconds is not None:
        RUN_DURATION.labels(outcome=outcome).observe(duration_seconds)
    if gpu_seconds:
        GPU_HOURS.labels(outcome=outcome).inc(gpu_seconds / 3600.0)


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    if port:
        start_http_server(port, registry=registry)
