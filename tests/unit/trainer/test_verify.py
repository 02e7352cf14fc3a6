"""The trainer acts only for its own FineTuneJob, as it asks: a config or a cleanup its FineTuneJob
does not produce is refused before any data is read (against a local HTTP server standing in for
the API server; tests/e2e runs the real one)."""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from finetune_api.protocol import ExitCode
from finetune_api.resource import FineTuneJobSpec
from finetune_api.runconfig import output_dir, trainer_config
from finetune_trainer import progress, verify
from finetune_trainer.errors import ConfigError
from support import trainer as helpers

FTJ = {
    "apiVersion": "finetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "demo", "namespace": "team-a", "uid": "uid-1"},
    "spec": {
        "model": {"source": "hf://org/model", "tokenSecretRef": {"name": "hf"}},
        "dataset": {"source": "pvc://data/train.jsonl"},
        "output": {"pvc": "artifacts", "retention": "Delete"},
    },
}


def operator_config(ftj: dict) -> dict:
    """The config the operator writes for ``ftj`` (what builders.config_map puts in the ConfigMap)."""
    spec = FineTuneJobSpec.model_validate(ftj["spec"])
    meta = ftj["metadata"]
    return trainer_config(spec, meta["namespace"], meta["name"], meta["uid"]).to_wire()


def test_the_operators_config_passes():
    verify.check_config(verify.TrainerConfig.model_validate(operator_config(FTJ)), FTJ)


@pytest.mark.parametrize(
    "forge, difference",
    [
        (lambda c: c["model"].update(trustRemoteCode=True), "model.trust_remote_code is True"),
        (lambda c: c["model"].update(source="hf://attacker/model"), "model.source is 'hf://attacker/model'"),
        (
            lambda c: c["dataset"].update(source="/mnt/pvc/db-backups/dump.jsonl"),
            "dataset.source is '/mnt/pvc/db-backups/dump.jsonl', the FineTuneJob gives '/mnt/pvc/data/train.jsonl'",
        ),
        (lambda c: c["output"].update(dir="/mnt/pvc/other/x"), "output.dir is '/mnt/pvc/other/x'"),
        (lambda c: c["output"].update(runId="uid-2"), "output.run_id is 'uid-2', the FineTuneJob gives 'uid-1'"),
    ],
    ids=["remote-code", "model", "other-claim", "output", "run"],
)
def test_a_config_the_finetunejob_did_not_ask_for_is_refused(forge, difference):
    config = operator_config(FTJ)
    forge(config)
    with pytest.raises(ConfigError) as e:
        verify.check_config(verify.TrainerConfig.model_validate(config), FTJ)
    assert e.value.message.startswith("the trainer's config does not match FineTuneJob team-a/demo (first difference: ")
    assert (
        difference in e.value.message and "refusing to run a config its FineTuneJob did not ask for" in e.value.message
    )


def test_a_cleanup_only_as_its_finetunejob_asks():
    spec = FineTuneJobSpec.model_validate(FTJ["spec"])
    target = output_dir(spec, "team-a", "demo")
    deleting = copy.deepcopy(FTJ)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    verify.check_cleanup(deleting, target, "uid-1")
    retained = copy.deepcopy(deleting)
    retained["spec"]["output"]["retention"] = "Retain"
    for ftj, output, run, said in [
        (FTJ, target, "uid-1", "it is not being deleted"),
        (deleting, "/mnt/pvc/artifacts/victim", "uid-1", f"its output is {target}, not /mnt/pvc/artifacts/victim"),
        (deleting, target, "uid-9", "its uid is uid-1, not uid-9"),
        (retained, target, "uid-1", "its output.retention is Retain"),
    ]:
        with pytest.raises(ConfigError, match=f"^FineTuneJob team-a/demo did not ask to remove {output}: .*{said}"):
            verify.check_cleanup(ftj, output, run)


class Api(BaseHTTPRequestHandler):
    answer: dict = {}
    status = 200
    requests: list = []

    def do_PATCH(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, json.loads(body)))
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(type(self).answer).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def pod_env(tmp_path, monkeypatch):
    """A trainer pod's environment pointing at a local stand-in for the API server."""
    Api.answer, Api.status, Api.requests = copy.deepcopy(FTJ), 200, []
    server = HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("t")
    monkeypatch.setattr(progress, "SA_DIR", sa)
    env = {
        "FINETUNE_JOB_NAME": "demo",
        "FINETUNE_JOB_NAMESPACE": "team-a",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(server.server_address[1]),
        "FINETUNE_STATUS_SCHEME": "http",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    server.shutdown()
    server.server_close()


def test_the_trainer_reads_its_own_finetunejob_with_a_patch_that_changes_nothing(pod_env):
    assert verify.own_finetunejob() == FTJ
    assert Api.requests == [("/apis/finetune.dev/v1alpha1/namespaces/team-a/finetunejobs/demo/status", {})]
    assert verify.own_finetunejob(env={}) is None  # outside a cluster: nothing to check


def test_a_finetunejob_the_trainer_cannot_read_stops_it(pod_env, tmp_path):
    Api.status = 403
    with pytest.raises(ConfigError, match="^cannot read FineTuneJob team-a/demo to check the config against it: "):
        verify.own_finetunejob()
    assert len(Api.requests) == verify.TRIES
    with pytest.raises(ConfigError, match="token missing"):
        verify.own_finetunejob(sa_dir=tmp_path)


def test_finetune_train_refuses_a_forged_config_before_reading_data(pod_env, tmp_path):
    """The stolen-token case end to end in the CLI: a ConfigMap written for FineTuneJob demo but
    turning on remote code ends with InvalidConfig, no data read, no output written."""
    config = operator_config(FTJ)
    config["model"]["trustRemoteCode"] = True
    config["output"]["dir"] = str(tmp_path / "out")
    config["reporting"] = {"terminationMessagePath": str(tmp_path / "term")}
    run = helpers.run_cli(config, tmp_path)
    assert run.rc == ExitCode.INVALID_CONFIG
    assert run.summary["reason"] == "InvalidConfig"
    assert "first difference: model.trust_remote_code is True, the FineTuneJob gives False" in run.summary["message"]
    assert not (tmp_path / "out").exists()


REMOTE = copy.deepcopy(FTJ)
REMOTE["spec"]["dataset"] = {
    "source": "https://files.example/train.jsonl",
    "sha256": "ab" * 32,
    "credentialsSecretRef": {"name": "s3"},
}
INTO = "/mnt/pvc/artifacts/.finetune-fetch"


def test_a_download_only_as_its_finetunejob_asks():
    verify.check_fetch(REMOTE, "https://files.example/train.jsonl", "dataset", None, "ab" * 32, INTO, cache=False)
    verify.check_fetch(REMOTE, "hf://org/model", "model", None, None, INTO, cache=False)
    verify.check_fetch(REMOTE, "hf://org/model", "model", None, None, "/mnt/finetune-cache", cache=True)
    for source, kind, revision, sha, into, cache in [
        ("https://attacker.example/train.jsonl", "dataset", None, "ab" * 32, INTO, False),  # another URL
        ("https://files.example/train.jsonl", "dataset", None, "cd" * 32, INTO, False),  # another checksum
        ("https://files.example/train.jsonl", "dataset", None, "ab" * 32, "/mnt/pvc/victim/x", False),  # elsewhere
        ("hf://org/model", "model", "evil-branch", None, INTO, False),  # another revision
        ("hf://org/model", "model", None, None, INTO, True),  # the cache is set: models go there
        ("hf://org/model", "dataset", None, None, INTO, False),  # another kind
    ]:
        with pytest.raises(ConfigError, match=f"^FineTuneJob team-a/demo did not ask to fetch {source} "):
            verify.check_fetch(REMOTE, source, kind, revision, sha, into, cache=cache)


def test_the_cache_setting_comes_from_the_pods_environment(monkeypatch):
    monkeypatch.delenv("FINETUNE_MODEL_CACHE", raising=False)
    assert verify.model_cache() is False
    assert verify.model_cache({"FINETUNE_MODEL_CACHE": "model-cache"}) is True


def test_finetune_train_fetch_refuses_before_sending_anything(pod_env, tmp_path, monkeypatch):
    """A fetch Job its FineTuneJob did not ask for (another URL) ends InvalidConfig, one line, before any
    connection to the source (the URL's host does not resolve: a connection attempt would say so)."""
    from finetune_trainer import cli

    Api.answer = copy.deepcopy(REMOTE)
    term = tmp_path / "term"
    code = cli.main(
        [
            *("fetch", "--source", "https://attacker.invalid/train.jsonl", "--into", INTO, "--kind", "dataset"),
            *("--revision", "", "--sha256", "ab" * 32, "--format", "auto", "--method", "sft"),
            *("--termination-message-path", str(term)),
        ]
    )
    summary = json.loads(term.read_text())
    assert code == ExitCode.INVALID_CONFIG and summary["reason"] == "InvalidConfig"
    assert summary["message"].startswith(
        "FineTuneJob team-a/demo did not ask to fetch https://attacker.invalid/train.jsonl (dataset)"
    )
    assert "https://files.example/train.jsonl" in summary["message"] and "\n" not in summary["message"]
    assert not (tmp_path / "mnt").exists()
