"""Prometheus metrics (prometheus-client), served on ``--metrics-port`` at /metrics."""

from __future__ import annotations

from collections import Counter as _Tally

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from finetune_api.resource import Phase

NAMESPACE = "finetune"

JOBS = Gauge(f"{NAMESPACE}_jobs", "FineTuneJobs known to this operator, by phase.", ["phase"])
RUN_DURATION = Histogram(
    f"{NAMESPACE}_run_duration_seconds", "Wall time of finished runs (trainer start to end).", ["outcome"],
    buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400, float("inf")),
)
GPU_HOURS = Counter(f"{NAMESPACE}_gpu_hours_total", "GPU hours consumed by finished runs.", ["outcome"])
RECONCILE_ERRORS = Counter(f"{NAMESPACE}_reconcile_errors_total", "Failed reconcile steps.", ["step"])
RECONCILE_LATENCY = Histogram(
    f"{NAMESPACE}_reconcile_duration_seconds", "Time of one reconcile step.", ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf")),
)
API_REQUESTS = Counter(f"{NAMESPACE}_operator_api_requests_total", "HTTP requests to the Kubernetes API made by "
                       "this process (kopf's lists, watches and patches included).", ["method"])
STATUS_WRITES = Counter(f"{NAMESPACE}_status_writes_total", "FineTuneJob status patches written.")
LEADER = Gauge(f"{NAMESPACE}_operator_leader", "1 while this replica holds the leader Lease.")


class PhaseTracker:
    """Keeps the phase of every FineTuneJob to export the by-phase gauge."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}

    def set(self, key: tuple[str, str], phase: str | None) -> None:
        if phase is None:
            self._phases.pop(key, None)
        else:
            self._phases[key] = phase
        self._export()

    def forget(self, key: tuple[str, str]) -> None:
        self.set(key, None)

    def _export(self) -> None:
        tally = _Tally(self._phases.values())
        for phase in Phase:
            JOBS.labels(phase=phase.value).set(tally.get(phase.value, 0))


def observe_final(outcome: str, duration_seconds: float | None, gpu_seconds: float | None) -> None:
    if duration_seconds is not None:
        RUN_DURATION.labels(outcome=outcome).observe(duration_seconds)
    if gpu_seconds:
        GPU_HOURS.labels(outcome=outcome).inc(gpu_seconds / 3600.0)


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    if port:
        start_http_server(port, registry=registry)
