"""Progress reporting: the in-cluster status patch (against a local HTTP server), its rate
limit, the progress file, termination messages and exit-code mapping."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from finetune_api.protocol import ExitCode, TrainingProgress
from finetune_trainer import progress
from finetune_trainer.cli import failure_summary
from finetune_trainer.progress import ProgressReporter, StatusPatcher
from support import trainer as helpers


class Recorder(BaseHTTPRequestHandler):
    requests: list = []
    status = 200

    def do_PATCH(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

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
        reporting={
            "statusPatchIntervalSeconds": 3600,
            "progressFile": str(tmp_path / "p" / "progress.json"),
            "terminationMessagePath": str(tmp_path / "term"),
        },
    )
    r = helpers.run_cli(cfg, tmp_path)
    assert r.rc == 0, r.summary
    reqs = Recorder.requests
    # Rate limit of one per hour: the first update goes out, then only the final one.
    assert len(reqs) == 2
    for req in reqs:
        assert req["path"] == "/apis/finetune.dev/v1alpha1/namespaces/team-a/finetunejobs/demo-job/status"
        assert req["headers"]["Content-Type"] == "application/merge-patch+json"
        assert req["headers"]["Authorization"] == "Bearer test-token"
        assert list(req["body"]) == ["status"] and list(req["body"]["status"]) == ["progress"]
        TrainingProgress.model_validate(req["body"]["status"]["progress"])
    assert reqs[0]["body"]["status"]["progress"]["stage"] == "loading"
    final = reqs[-1]["body"]["status"]["progress"]
    assert final["stage"] == "completed" and final["step"] == 3 and final["percent"] == 100
    assert json.loads((tmp_path / "p" / "progress.json").read_text())["stage"] == "completed"
    assert not (r.out / "progress.json").exists()


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


def test_heartbeat_keeps_the_status_fresh_between_updates(api_server, tmp_path):
    """A step slower than the patch interval (or an update dropped by the rate limit) must not
    leave the status stale: the latest progress is re-sent every interval until the final update."""
    url = f"http://127.0.0.1:{api_server.server_address[1]}/x"
    reporter = ProgressReporter(None, StatusPatcher(url, "t", None, interval=0.2), stream=open("/dev/null", "w"))
    reporter.update(stage="training", step=1, total_steps=10)
    reporter.update(stage="training", step=2, total_steps=10)  # within the interval: dropped for now
    time.sleep(1.0)
    steps = [r["body"]["status"]["progress"]["step"] for r in Recorder.requests]
    assert steps[0] == 1 and len(steps) >= 3 and set(steps[1:]) == {2}, steps
    reporter.update(stage="completed", step=10, final=True)
    sent = len(Recorder.requests)
    time.sleep(0.5)
    assert len(Recorder.requests) == sent  # the final update stops the heartbeat
    assert Recorder.requests[-1]["body"]["status"]["progress"]["stage"] == "completed"


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
