"""Output directories belong to one run: claimed, resumed by the same run, refused to others,
replaced on request, cleaned up file by file (never someone else's files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_trainer import runrecord
from finetune_trainer.errors import OutputExistsError
from support import trainer as helpers

# the adversarial corpus's output-directory cases (issues 9 and 16) live here
pytestmark = pytest.mark.adversarial


def finished_result(root: Path, run_id: str, owner: str = "team-a/first") -> None:
    """What a finished run leaves: its claim, artifacts listed in SHA256SUMS, _COMPLETE, checkpoints."""
    runrecord.claim(root, run_id, owner)
    (root / "adapter_model.safetensors").write_bytes(b"w" * 1000)
    (root / "metrics.json").write_text("{}")
    (root / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (root / "checkpoints" / "checkpoint-2" / "state.pt").write_bytes(b"s" * 10)
    (root / "SHA256SUMS").write_text("aa  adapter_model.safetensors\nbb  metrics.json\n")
    (root / "_COMPLETE").write_text(json.dumps({"runId": run_id}))


def test_a_new_directory_is_claimed_and_the_same_run_may_continue(tmp_path):
    out = tmp_path / "out"
    runrecord.claim(out, "uid-1", "team-a/first")
    assert runrecord.read(out)["runId"] == "uid-1" and runrecord.read(out)["owner"] == "team-a/first"
    runrecord.claim(out, "uid-1", "team-a/first")  # a retried or resumed pod of the same run


def test_another_runs_result_is_refused_naming_it(tmp_path):
    out = tmp_path / "out"
    finished_result(out, "uid-1")
    with pytest.raises(OutputExistsError, match=r"holds the result of run uid-1 \(FineTuneJob team-a/first\)"):
        runrecord.claim(out, "uid-2", "team-a/second")
    assert (out / "adapter_model.safetensors").read_bytes() == b"w" * 1000  # untouched


def test_a_failed_runs_partial_output_is_named_as_such_with_how_to_reuse_it(tmp_path):
    """A run that failed left only its claim and progress: no result to speak of."""
    out = tmp_path / "out"
    runrecord.claim(out, "uid-1", "team-a/first")
    (out / "progress.json").write_text('{"stage": "failed"}\n')
    with pytest.raises(OutputExistsError) as e:
        runrecord.claim(out, "uid-2", "team-a/first")
    assert e.value.message == (
        f"the output directory {out} holds the partial output of run uid-1 (FineTuneJob team-a/first), which did "
        "not finish (no result in it); set output.replace: true to take the directory over (only that run's files "
        "are removed), or write to another output.path"
    )
    runrecord.claim(out, "uid-2", "team-a/first", replace=True)
    assert runrecord.read(out)["runId"] == "uid-2" and not (out / "progress.json").exists()


def test_an_unclaimed_result_is_refused_but_unrelated_files_are_fine(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "adapter_config.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="a result that no recorded run owns"):
        runrecord.claim(legacy, "uid-2")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("{}\n")
    runrecord.claim(data, "uid-2")  # next to the input data: allowed, the data is not ours to touch


def test_replace_removes_only_the_other_runs_files(tmp_path):
    out = tmp_path / "out"
    finished_result(out, "uid-1")
    (out / "train.jsonl").write_text("{}\n")
    runrecord.claim(out, "uid-2", "team-a/second", replace=True)
    assert runrecord.read(out)["runId"] == "uid-2"
    assert sorted(p.name for p in out.iterdir()) == ["_RUN", "train.jsonl"]


def test_cleanup_removes_this_runs_files_and_keeps_the_rest(tmp_path):
    out = tmp_path / "data" / "log-intent"
    out.mkdir(parents=True)
    (out / "train.jsonl").write_text("{}\n")
    (out / "eval.jsonl").write_text("{}\n")
    finished_result(out, "uid-1")
    result = runrecord.cleanup(out, "uid-1")
    assert result["outcome"] == "removed" and "other files" in result["message"]
    assert sorted(p.name for p in out.iterdir()) == ["eval.jsonl", "train.jsonl"]


def test_cleanup_of_another_runs_directory_keeps_everything(tmp_path):
    out = tmp_path / "out"
    finished_result(out, "uid-1")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = runrecord.cleanup(out, "uid-2")
    assert result["outcome"] == "kept" and "run uid-1" in result["message"]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert runrecord.cleanup(tmp_path / "missing", "uid-2")["outcome"] == "nothing"


def test_cleanup_of_its_own_directory_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    finished_result(out, "uid-1")
    assert runrecord.cleanup(out, "uid-1")["outcome"] == "removed"
    assert not out.exists()


def test_cleanup_of_a_failed_multinode_run_removes_its_failure_reports(tmp_path):
    out = tmp_path / "out"
    runrecord.claim(out, "uid-1")
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (out / ".rank-failures").mkdir()
    (out / ".rank-failures" / "node-1-rank-1.json").write_text("{}")
    assert runrecord.cleanup(out, "uid-1")["outcome"] == "removed"
    assert not out.exists()


def test_the_cleanup_command_reports_one_json_line(tmp_path):
    from finetune_trainer.cli import main

    out = tmp_path / "out"
    finished_result(out, "uid-1")
    message = tmp_path / "termination-log"
    assert main(["cleanup", "--output", str(out), "--run-id", "uid-2", "--termination-message-path", str(message)]) == 0
    assert json.loads(message.read_text())["outcome"] == "kept" and out.exists()
    assert main(["cleanup", "--output", str(out), "--run-id", "uid-1", "--termination-message-path", str(message)]) == 0
    assert json.loads(message.read_text())["outcome"] == "removed" and not out.exists()


def test_a_run_never_reports_or_overwrites_another_runs_result(tiny_model, tmp_path):
    """The same output path for two FineTuneJobs (or one deleted and re-created): the second run
    fails with OutputExists before loading anything, unless it asks to replace the first result."""
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 20))
    quick = {"training": {"maxSteps": 1}, "evaluation": {"baseline": False, "sampleGenerations": 0}}
    first = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "shared",
        **quick,
        output={"dir": str(tmp_path / "shared"), "runId": "uid-1", "owner": "team-a/first"},
    )
    assert helpers.run_cli(first, tmp_path, "first.json").rc == 0
    adapter = (tmp_path / "shared" / "adapter_model.safetensors").read_bytes()

    second = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "shared",
        **quick,
        output={"dir": str(tmp_path / "shared"), "runId": "uid-2", "owner": "team-a/second"},
    )
    refused = helpers.run_cli(second, tmp_path, "second.json")
    assert refused.rc == 6 and refused.summary["reason"] == "OutputExists"
    assert "the result of run uid-1 (FineTuneJob team-a/first)" in refused.summary["message"]
    assert (tmp_path / "shared" / "adapter_model.safetensors").read_bytes() == adapter

    second["output"]["replace"] = True
    replaced = helpers.run_cli(second, tmp_path, "second.json")
    assert replaced.rc == 0 and "nothing was trained" not in (replaced.summary.get("message") or "")
    assert runrecord.read(tmp_path / "shared")["runId"] == "uid-2"


def test_other_processes_of_a_run_wait_for_its_claim(tmp_path):
    import threading

    out = tmp_path / "out"
    finished_result(out, "uid-1")
    claimer = threading.Timer(0.5, runrecord.claim, (out, "uid-2", "team-a/second", True))
    claimer.start()
    runrecord.wait_for_claim(out, "uid-2", timeout=30)  # returns once rank 0 has replaced uid-1's result
    assert not (out / "checkpoints").exists()  # nothing of uid-1 is left to resume from
    with pytest.raises(OutputExistsError, match="was not claimed by run uid-3"):
        runrecord.wait_for_claim(out, "uid-3", timeout=0.5)
