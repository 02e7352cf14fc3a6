"""Progress reporting: stdout JSON lines, an atomically rewritten progress file, and (in a
cluster) a rate-limited JSON merge patch of the FineTuneJob's ``status.progress``; the memory
plan goes to ``status.plan`` (once planned, and again with the measured peak).

In-cluster patching is on when ``FINETUNE_STATUS_PATCH=1`` and ``FINETUNE_JOB_NAME`` /
``FINETUNE_JOB_NAMESPACE`` plus the pod's service account are present. It uses urllib only:
the trainer never imports kopf or the kubernetes client. Reporting problems are logged as
warnings and never fail the training.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from finetune_api import GROUP, PLURAL, VERSION
from finetune_api.base import ApiModel
from finetune_api.protocol import MemoryPlan, TrainingProgress
from finetune_api.serving import ServingStatus

log = logging.getLogger("finetune_trainer")

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVING_PATCH_ATTEMPTS = 5


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary sibling and rename: readers see the old or the new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def status_path(namespace: str, name: str) -> str:
    """The FineTuneJob's status subresource."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"


def status_field_patch(field: str, value: ApiModel) -> bytes:
    """A merge patch of one trainer-written status field (``progress``, ``plan``, ``serving``) and
    nothing else (phase, conditions, metrics and artifacts are the operator's; the chart's
    status-integrity policy refuses anything else)."""
    return json.dumps({"status": {field: value.to_wire()}}).encode()


class ApiTarget:
    """The pod's own FineTuneJob's status subresource and the credentials to reach it: the
    downward-API name and namespace, the API server's address and the pod's ServiceAccount token."""

    def __init__(self, url: str, token: str, ssl_context: ssl.SSLContext | None, owner: str):
        self.url = url
        self.token = token
        self.ssl_context = ssl_context
        self.owner = owner
        """``<namespace>/<name>`` of the FineTuneJob."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, sa_dir: Path | None = None) -> ApiTarget | str:
        """The target, or what is missing (a string) when the pod has no FineTuneJob to reach."""
        env = os.environ if env is None else env
        sa_dir = sa_dir or SA_DIR
        name, ns = env.get("FINETUNE_JOB_NAME", ""), env.get("FINETUNE_JOB_NAMESPACE", "")
        host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443")
        token_file, ca_file = sa_dir / "token", sa_dir / "ca.crt"
        missing = [
            k
            for k, v in (("FINETUNE_JOB_NAME", name), ("FINETUNE_JOB_NAMESPACE", ns), ("KUBERNETES_SERVICE_HOST", host))
            if not v
        ]
        if not token_file.is_file():
            missing.append(str(token_file))
        if missing:
            return f"{', '.join(missing)} missing"
        scheme = env.get("FINETUNE_STATUS_SCHEME", "https")  # http only for tests
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        ctx = None
        if scheme == "https":
            ctx = ssl.create_default_context(cafile=str(ca_file)) if ca_file.is_file() else ssl.create_default_context()
        return cls(
            f"{scheme}://{host}:{port}{status_path(ns, name)}", token_file.read_text().strip(), ctx, f"{ns}/{name}"
        )

    def patch(self, body: bytes, timeout: float) -> dict:
        """A JSON merge patch of the status; returns the FineTuneJob as the API server has it."""
        req = urllib.request.Request(
            self.url,
            data=body,
            method="PATCH",
            headers={
                "Content-Type": "application/merge-patch+json",
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as resp:
            answer: dict = json.loads(resp.read() or b"{}")
            return answer


class StatusPatcher:
    """PATCHes ``{"status": {"progress": ...}}`` onto the FineTuneJob status subresource."""

    def __init__(
        self,
        url: str,
        token: str,
        ssl_context: ssl.SSLContext | None,
        interval: float,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ):
        self.url = url
        self.sleep = sleep
        self.token = token
        self.ssl_context = ssl_context
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self._last: float | None = None
        self.sent = 0
        self.failures = 0

    @classmethod
    def from_env(
        cls, interval: float, env: Mapping[str, str] | None = None, sa_dir: Path | None = None
    ) -> StatusPatcher | None:
        env = os.environ if env is None else env
        if env.get("FINETUNE_STATUS_PATCH") != "1":
            return None
        target = ApiTarget.from_env(env, sa_dir)
        if isinstance(target, str):
            log.warning("status patching is on but %s: progress goes to stdout and the progress file only", target)
            return None
        return cls(target.url, target.token, target.ssl_context, interval)

    def maybe_send(self, progress: TrainingProgress, final: bool = False) -> bool:
        """Send if the interval has passed since the last patch (or ``final``); never raises."""
        now = self.clock()
        if not final and self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return self.send(status_field_patch("progress", progress))

    def send(self, body: bytes, attempts: int = 1) -> bool:
        """PATCH ``body`` (a merge patch of the status) now, trying up to ``attempts`` times a second
        apart; never raises."""
        for attempt in range(1, attempts + 1):
            try:
                ApiTarget(self.url, self.token, self.ssl_context, "").patch(body, self.timeout)
                self.sent += 1
                return True
            except Exception as exc:  # reporting must never fail the training
                self.failures += 1
                log.warning("status patch to %s failed (attempt %d of %d): %s", self.url, attempt, attempts, exc)
                if attempt < attempts:
                    self.sleep(1.0)
        return False


class ProgressReporter:
    """One place that emits a TrainingProgress: stdout line, progress file, status patch."""

    def __init__(
        self,
        progress_file: str | None,
        patcher: StatusPatcher | None = None,
        stream: TextIO | None = None,
        wait: Callable[[float], object] | None = None,
    ):
        """``wait(seconds)``: how the heartbeat waits between beats (by default until the interval
        passed or the reporter closed; tests pass one they drive)."""
        self.progress_file = progress_file
        self.patcher = patcher
        self.stream = stream
        self.current = TrainingProgress(stage="loading")
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait
        self.heartbeat: threading.Thread | None = None
        if patcher is not None:
            self.heartbeat = threading.Thread(
                target=self._beat, args=(patcher.interval,), name="progress-heartbeat", daemon=True
            )
            self.heartbeat.start()

    def _beat(self, interval: float) -> None:
        """Re-send the latest progress with a fresh ``updatedAt`` every patch interval. Without it a
        slow step (or a log interval of many steps) or an update dropped by the rate limit would
        leave the status older than the interval; with it the status is at most two intervals old."""
        while True:
            self._wait(interval)
            if self._stopped.is_set():
                return
            self.update(echo=False)

    def restore(self) -> ProgressReporter:
        """Continue from the progress file's last line (the launcher of several workers reporting
        the failure of one of them)."""
        if self.progress_file is None:
            return self
        try:
            self.current = TrainingProgress.model_validate_json(Path(self.progress_file).read_text())
        except (OSError, ValueError, TypeError):
            pass
        return self

    def close(self) -> None:
        """Stop the heartbeat (a final update does this too)."""
        self._stopped.set()

    def update(self, final: bool = False, echo: bool = True, **fields) -> TrainingProgress:
        with self._lock:
            data = self.current.model_dump()
            data.update(fields)
            data["updated_at"] = now_rfc3339()
            self.current = TrainingProgress.model_validate(data)
            line = self.current.model_dump_json(by_alias=True, exclude_none=True)
            if echo:
                stream = self.stream or sys.stdout
                stream.write(line + "\n")
                stream.flush()
            if self.progress_file:
                try:
                    write_atomic(self.progress_file, line + "\n")
                except OSError as exc:
                    log.warning("cannot write progress file %s: %s", self.progress_file, exc)
            if final:
                self._stopped.set()
            if self.patcher is not None and (final or not self._stopped.is_set()):  # closed: quiet
                self.patcher.maybe_send(self.current, final=final)
            return self.current

    def stage(self, stage: str, final: bool = False) -> None:
        self.update(stage=stage, final=final)

    def report_plan(self, plan: MemoryPlan) -> None:
        """The memory plan: one ``{"plan": ...}`` line on stdout and ``status.plan`` (not rate-limited)."""
        self._report_field("plan", plan, attempts=1)

    def report_serving(self, serving: ServingStatus) -> None:
        """What a serving stack needs, once the adapter is published: one ``{"serving": ...}`` line and
        ``status.serving``. The completion record cannot carry it (finetune_api.protocol.TrainerSummary),
        so the patch is tried a few times; the same facts are in metrics.json and serving/."""
        self._report_field("serving", serving, attempts=SERVING_PATCH_ATTEMPTS)

    def _report_field(self, field: str, value: ApiModel, attempts: int) -> None:
        with self._lock:
            stream = self.stream or sys.stdout
            stream.write(json.dumps({field: value.to_wire()}) + "\n")
            stream.flush()
            if self.patcher is not None:
                self.patcher.send(status_field_patch(field, value), attempts=attempts)


def make_progress_callback(reporter: ProgressReporter, tokens_fn: Callable[[], int] | None = None):
    """A transformers TrainerCallback turning Trainer logs into TrainingProgress lines."""
    from transformers import TrainerCallback

    class ProgressCallback(ProgressTracking, TrainerCallback):
        pass

    return ProgressCallback(reporter)


class ProgressTracking:
    """Trainer events -> TrainingProgress updates (the transformers callback of ``make_progress_callback``)."""

    def __init__(self, reporter: ProgressReporter):
        self.reporter = reporter
        self.t0 = None
        self.start_step = 0
        self.last_t = None
        self.last_tokens = 0
        self.history: list[dict] = []

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = self.last_t = time.monotonic()
        self.start_step = state.global_step
        self.last_tokens = state.num_input_tokens_seen or 0
        self.reporter.update(
            stage="training",
            step=state.global_step,
            total_steps=state.max_steps,
            percent=_pct(state.global_step, state.max_steps),
        )

    def position(self, state, now: float) -> dict:
        """Where training is: step, percent, epoch and the ETA from the steps done so far."""
        step, total = state.global_step, state.max_steps
        done = step - self.start_step
        eta = (now - self.t0) / done * (total - step) if done > 0 and total and self.t0 else None
        return {
            "stage": "training",
            "step": step,
            "total_steps": total,
            "percent": _pct(step, total),
            "epoch": round(state.epoch or 0.0, 4),
            "eta_seconds": round(eta, 1) if eta is not None else None,
        }

    def on_step_end(self, args, state, control, **kw):
        # Every optimizer step moves step/percent/ETA (quietly: stdout gets the on_log lines);
        # the status patch's rate limit bounds the API writes.
        self.reporter.update(**self.position(state, time.monotonic()), echo=False)

    def on_log(self, args, state, control, logs=None, **kw):
        logs = dict(logs or {})
        now = time.monotonic()
        step = state.global_step
        entry = {"step": step, "epoch": state.epoch, **logs}
        self.history.append(entry)
        if "eval_loss" in logs:
            self.reporter.update(step=step, eval_loss=round(float(logs["eval_loss"]), 4), echo=True)
            return
        if "loss" not in logs:
            return
        tokens = state.num_input_tokens_seen or 0
        dt = max(now - (self.last_t or now), 1e-9)
        tps = (tokens - self.last_tokens) / dt if tokens else None
        self.last_t, self.last_tokens = now, tokens
        entry["tokensPerSecond"] = tps
        self.reporter.update(
            **self.position(state, now),
            loss=round(float(logs["loss"]), 4),
            learning_rate=float(logs["learning_rate"]) if "learning_rate" in logs else None,
            tokens_per_second=round(tps, 2) if tps is not None else None,
        )


def _pct(step: int, total: int | None) -> int | None:
    if not total:
        return None
    return max(0, min(100, int(100 * step / total)))
