"""Several processes in one pod: ``finetune-train`` relaunches itself under torch.distributed
(here two CPU processes over gloo, as N GPUs run N processes over NCCL): one worker fails mid-run,
the termination message names it, the next attempt resumes from the checkpoint and rank 0 alone
reports and publishes."""

from __future__ import annotations

import json

from finetune_api.protocol import ExitCode
from finetune_trainer.artifacts import verify_checksums
from support import trainer as helpers


def launch(cfg: dict, tmp, **env) -> helpers.Run:
    """``python -m finetune_trainer`` as the container runs it, told to use two processes."""
    return helpers.Pod.start(cfg, tmp, "pod", helpers.trainer_env(tmp, FINETUNE_PROCESSES="2", **env)).wait()


def test_two_processes_fail_resume_and_publish_once(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("prompt-completion", 40))
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "out",
        training={"maxSteps": 4, "saveSteps": 2, "packing": True},
        evaluation={"sampleGenerations": 1},
    )

    failed = launch(cfg, tmp_path, CRASH_RANK="1", CRASH_STEP="3")
    assert failed.rc == ExitCode.FAILED, failed.stderr[-3000:]
    assert failed.summary["outcome"] == "failed" and failed.summary["reason"] == "TrainerError"
    assert failed.summary["message"] == "rank 1: RuntimeError: simulated failure of one worker", failed.summary
    assert (failed.out / "checkpoints" / "checkpoint-2").is_dir() and not (failed.out / "_COMPLETE").exists()
    assert json.loads((failed.out / "progress.json").read_text())["stage"] == "failed"

    resumed = launch(cfg, tmp_path)
    assert resumed.rc == 0, resumed.stderr[-3000:]
    # One reporter (rank 0): each step is reported once, and the run continued from step 2.
    steps = [
        p["step"] for p in resumed.progress if p.get("stage") == "training" and "loss" in p and "evalLoss" not in p
    ]
    assert steps == [3, 4]
    assert [p["stage"] for p in resumed.progress].count("completed") == 1
    m = json.loads((resumed.out / "metrics.json").read_text())
    assert m["processes"] == 2 and m["globalBatchSize"] == 2 * 1 * 2
    assert m["resumedFromStep"] == 2 and m["steps"] == 4
    assert m["baseline"] and m["final"] and len(m["samples"]) == 1
    assert resumed.summary["outcome"] == "succeeded"
    assert resumed.summary["metrics"]["processes"] == 2 and resumed.summary["metrics"]["globalBatchSize"] == 4
    assert verify_checksums(resumed.out) == [] and not (resumed.out / "checkpoints").exists()
    assert not list(resumed.out.glob(".staging-*"))
