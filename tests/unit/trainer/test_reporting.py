"""Progress reporting: the in-cluster status patch (against a local HTTP server), its rate
limit, the progress file, termination messages and exit-code mapping."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from finetune_api.protocol import ExitCode, MemoryPlan, TrainingProgress
from finetune_api.serving import ServingStatus
from finetune_trainer import planning, progress, verify
from finetune_trainer.cli import failure_summary
from finetune_trainer.progress import SERVING_PATCH_ATTEMPTS, ProgressReporter, StatusPatcher
from support import trainer as helpers


class Recorder(BaseHTTPRequestHandler):
    requests: list = []
    status = 200

    answer: dict = {}

    def do_PATCH(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(type(self).answer).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server():
    Recorder.requests = []
    Recorder.status = 200
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def in_cluster(api_server, tmp_path, monkeypatch):
    """The trainer in a pod: its FineTuneJob named in the environment, a token, the API server. The
    API answers patches with a FineTuneJob; the check of the config against it is recorded here
    (test_verify.py tests the check itself: these configs use local paths no spec produces)."""
    Recorder.answer = {"kind": "FineTuneJob", "metadata": {"name": "demo-job", "namespace": "team-a"}}
    checked: list = []
    monkeypatch.setattr(verify, "check_config", lambda config, ftj: checked.append(ftj))
    api_server.checked = checked
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("test-token\n")
    monkeypatch.setattr(progress, "SA_DIR", sa)
    monkeypatch.setenv("FINETUNE_STATUS_PATCH", "1")
    monkeypatch.setenv("FINETUNE_JOB_NAME", "demo-job")
    monkeypatch.setenv("FINETUNE_JOB_NAMESPACE", "team-a")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api_server.server_address[1]))
    monkeypatch.setenv("FINETUNE_STATUS_SCHEME", "http")
    return api_server


def test_training_patches_status_over_http(in_cluster, tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 14))
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "out",
        training={"maxSteps": 3},
        evaluation={"sampleGenerations": 0},
        origin={  # what the operator sets: the run's locations in the cluster (the serving facts name them)
            "model": "pvc://models/tiny-llama",
            "dataset": "pvc://datasets/train.jsonl",
            "output": "pvc://artifacts/team-a/demo-job",
            "name": "demo-job",
        },
        reporting={
            "statusPatchIntervalSeconds": 3600,
            "progressFile": str(tmp_path / "p" / "progress.json"),
            "terminationMessagePath": str(tmp_path / "term"),
        },
    )
    r = helpers.run_cli(cfg, tmp_path)
    assert r.rc == 0, r.summary
    read, *requests = Recorder.requests
    # First the trainer reads its FineTuneJob (a patch that changes nothing) and checks its config against it
    assert read["body"] == {} and in_cluster.checked == [Recorder.answer]
    for req in requests:
        assert req["path"] == "/apis/finetune.dev/v1alpha1/namespaces/team-a/finetunejobs/demo-job/status"
        assert req["headers"]["Content-Type"] == "application/merge-patch+json"
        assert req["headers"]["Authorization"] == "Bearer test-token"
        assert list(req["body"]) == ["status"] and list(req["body"]["status"]) in (["progress"], ["plan"], ["serving"])
    reqs = [req for req in requests if "progress" in req["body"]["status"]]
    # Rate limit of one per hour: the first update goes out, then only the final one.
    assert len(reqs) == 2
    for req in reqs:
        TrainingProgress.model_validate(req["body"]["status"]["progress"])
    assert reqs[0]["body"]["status"]["progress"]["stage"] == "planning"
    final = reqs[-1]["body"]["status"]["progress"]
    assert final["stage"] == "completed" and final["step"] == 3 and final["percent"] == 100
    assert json.loads((tmp_path / "p" / "progress.json").read_text())["stage"] == "completed"
    assert not (r.out / "progress.json").exists()
    # The memory plan, not rate-limited: once planned, once more with the ETA after the first steps.
    plans = [
        MemoryPlan.model_validate(req["body"]["status"]["plan"]) for req in requests if "plan" in req["body"]["status"]
    ]
    assert len(plans) == 2 and plans[0].eta_seconds is None and plans[1].eta_seconds is not None
    assert plans[0].predicted_peak_bytes == plans[1].predicted_peak_bytes > 0 and plans[0].fits is None  # a CPU
    # The serving facts once the adapter is published, before the final progress (the trainer's last word)
    kinds = [next(iter(req["body"]["status"])) for req in requests]
    assert kinds.count("serving") == 1 and kinds[-2:] == ["serving", "progress"], kinds
    serving = ServingStatus.model_validate(requests[-2]["body"]["status"]["serving"])
    assert serving == ServingStatus.model_validate(r.serving) and serving.task_type == "CAUSAL_LM"


def test_rate_limit_and_final_patch(api_server):
    clock = [100.0]
    url = f"http://127.0.0.1:{api_server.server_address[1]}/apis/finetune.dev/v1alpha1/namespaces/ns/finetunejobs/j/status"
    patcher = StatusPatcher(url, "t", None, interval=10.0, clock=lambda: clock[0])
    p = TrainingProgress(step=1, stage="training")
    sent = []
    for t in (100.0, 101.0, 109.9, 110.0, 115.0, 120.5):
        clock[0] = t
        sent.append(patcher.maybe_send(p))
    assert sent == [True, False, False, True, False, True]
    clock[0] = 121.0
    assert patcher.maybe_send(p, final=True) is True  # the final one always goes out
    assert len(Recorder.requests) == 4


class Clock:
    """The patcher's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Beats:
    """The heartbeat's waiter, driven by the test: ``beat()`` ends one wait and returns once the
    heartbeat has done its update and waits again (bounded waits: a hung heartbeat fails the test)."""

    def __init__(self) -> None:
        self._go = threading.Semaphore(0)
        self._waiting = threading.Semaphore(0)

    def wait(self, interval: float) -> None:  # on the heartbeat's thread
        self._waiting.release()
        self._go.acquire(timeout=60)

    def waiting(self) -> None:
        assert self._waiting.acquire(timeout=60), "the heartbeat does not wait"

    def beat(self) -> None:
        self.release()
        self.waiting()

    def release(self) -> None:
        """End the current wait (the heartbeat may stop rather than wait again)."""
        self._go.release()


def test_heartbeat_keeps_the_status_fresh_between_updates(api_server):
    """A step slower than the patch interval (or an update dropped by the rate limit) must not
    leave the status stale: the latest progress is re-sent every interval until the final update."""
    url = f"http://127.0.0.1:{api_server.server_address[1]}/x"
    clock, beats = Clock(), Beats()
    patcher = StatusPatcher(url, "t", None, interval=10, clock=clock)
    reporter = ProgressReporter(None, patcher, stream=open(os.devnull, "w"), wait=beats.wait)

    def sent() -> list[int]:
        return [r["body"]["status"]["progress"]["step"] for r in Recorder.requests]

    beats.waiting()
    reporter.update(stage="training", step=1, total_steps=10)
    reporter.update(stage="training", step=2, total_steps=10)  # within the interval: dropped for now
    beats.beat()  # a beat within the interval is rate-limited too
    assert sent() == [1]
    clock.now += 10
    beats.beat()  # the interval passed with no update: the heartbeat sends the latest progress
    clock.now += 10
    beats.beat()  # and again a whole interval later
    assert sent() == [1, 2, 2]
    reporter.update(stage="completed", step=10, final=True)
    beats.release()  # the heartbeat's last wait ends: it sees the final update and stops
    reporter.heartbeat.join(timeout=60)
    assert not reporter.heartbeat.is_alive()  # the final update stopped the heartbeat
    assert sent() == [1, 2, 2, 10]
    assert Recorder.requests[-1]["body"]["status"]["progress"]["stage"] == "completed"


def test_the_serving_facts_are_tried_again_while_the_api_server_fails(api_server, caplog):
    """status.serving is reported once, at the end: a failing API server gets five tries a second apart."""
    Recorder.status = 503
    url = f"http://127.0.0.1:{api_server.server_address[1]}/x"
    waits: list[float] = []
    patcher = StatusPatcher(url, "t", None, interval=1.0, sleep=waits.append)
    reporter = ProgressReporter(None, patcher, stream=open("/dev/null", "w"))
    reporter.close()
    serving = ServingStatus(adapter_uri="pvc://a/b", base_model="hf://o/m", task_type="CAUSAL_LM", lora_rank=8)
    with caplog.at_level("WARNING", logger="finetune_trainer"):
        reporter.report_serving(serving)
    assert len(Recorder.requests) == SERVING_PATCH_ATTEMPTS == 5 and waits == [1.0] * 4
    assert "attempt 5 of 5" in caplog.text
    Recorder.requests.clear()
    Recorder.status = 200
    reporter.report_serving(serving)
    assert [r["body"] for r in Recorder.requests] == [{"status": {"serving": serving.to_wire()}}]


def test_reporting_errors_never_fail(api_server, caplog, tmp_path):
    Recorder.status = 500
    url = f"http://127.0.0.1:{api_server.server_address[1]}/x"
    patcher = StatusPatcher(url, "t", None, interval=1.0)
    reporter = ProgressReporter(str(tmp_path / "progress.json"), patcher, stream=open("/dev/null", "w"))
    with caplog.at_level("WARNING", logger="finetune_trainer"):
        reporter.update(stage="training", step=1)
    reporter.close()
    assert patcher.failures == 1 and "status patch" in caplog.text
    dead = StatusPatcher("http://127.0.0.1:9/x", "t", None, interval=1.0, timeout=0.5)
    assert dead.maybe_send(TrainingProgress()) is False


def test_status_patch_needs_env_and_service_account(tmp_path, monkeypatch, caplog):
    env = {
        "FINETUNE_STATUS_PATCH": "1",
        "FINETUNE_JOB_NAME": "j",
        "FINETUNE_JOB_NAMESPACE": "n",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
    }
    with caplog.at_level("WARNING", logger="finetune_trainer"):
        assert StatusPatcher.from_env(10, env=env, sa_dir=tmp_path) is None
    assert "token" in caplog.text
    assert StatusPatcher.from_env(10, env={}, sa_dir=tmp_path) is None
    (tmp_path / "token").write_text("abc")
    p = StatusPatcher.from_env(10, env=env, sa_dir=tmp_path)
    assert p.url == "https://10.0.0.1:443/apis/finetune.dev/v1alpha1/namespaces/n/finetunejobs/j/status"
    assert p.token == "abc"


def test_unwritable_termination_path_is_logged_not_fatal(tmp_path, caplog):
    from finetune_trainer.cli import main

    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 2))
    cfg = helpers.make_config(
        "/nope", data, tmp_path / "out", reporting={"terminationMessagePath": str(tmp_path / "no-dir" / "sub" / "term")}
    )
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with caplog.at_level("WARNING", logger="finetune_trainer"):
        assert main(["--config", str(tmp_path / "c.json")]) == ExitCode.INVALID_DATA
    assert "cannot write the termination message" in caplog.text


def test_exit_code_mapping_and_oom_hint():
    import torch

    code, s = failure_summary(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert code == ExitCode.OUT_OF_MEMORY == 5 and s.reason == "OutOfMemory"
    for hint in ("batchSize", "gradientCheckpointing", "qlora", "maxSeqLength"):
        assert hint in s.message
    code, s = failure_summary(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried... out of memory"))
    assert code == 5
    code, s = failure_summary(planning.InsufficientGPUMemory("memory plan: ... does not fit; would fit: ..."))
    assert code == ExitCode.INSUFFICIENT_GPU_MEMORY == 14 and s.reason == "InsufficientGPUMemory"
    code, s = failure_summary(ValueError("boom"))
    assert code == ExitCode.FAILED == 1 and s.reason == "TrainerError" and s.message == "ValueError: boom"
    long = failure_summary(ValueError("x" * 10000))[1]
    assert len(long.to_termination_message().encode()) <= 4096


def test_trainer_never_imports_kopf_or_the_kubernetes_client():
    """Every trainer module (every method included) imports without kopf and the Kubernetes client."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import finetune_trainer.cli, finetune_trainer.pipeline, finetune_trainer.sft\n"
        "import finetune_trainer.classification, finetune_trainer.dpo, finetune_trainer.forgetting\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes'))\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_metrics_json_is_strict_json(tmp_path):
    from finetune_trainer.report import write_metrics

    write_metrics(tmp_path / "m.json", {"final": {"loss": float("nan"), "acc": 1.0}, "l": [float("inf"), 2]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"final": {"loss": None, "acc": 1.0}, "l": [None, 2]}
