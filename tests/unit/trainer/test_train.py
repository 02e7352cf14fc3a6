"""End-to-end training runs of tiny random Llama models on CPU: LoRA and QLoRA, every dataset
format, artifacts and checksums, progress and termination summary, resume, atomic publishing,
the evaluate command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from finetune_trainer import artifacts, pipeline
from finetune_trainer.artifacts import verify_checksums
from support import trainer as helpers

ARTIFACTS = {
    "adapter_model.safetensors",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "metrics.json",
    "eval_report.md",
    "loss.png",
    "trainer_config.json",
}


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    """One complete LoRA run on chat data, shared by the assertions below."""
    tmp = tmp_path_factory.mktemp("lora")
    data = helpers.write_jsonl(tmp / "train.jsonl", helpers.records("chat", 30))
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp / "out",
        training={"evalSteps": 2, "earlyStoppingPatience": 5, "gradientCheckpointing": True},
    )
    return helpers.run_cli(cfg, tmp)


def test_lora_run_publishes_complete_artifacts(lora_run):
    r = lora_run
    assert r.rc == 0, r.summary
    names = {p.name for p in r.out.iterdir()}
    assert ARTIFACTS <= names
    assert {"SHA256SUMS", "_COMPLETE"} <= names
    assert "checkpoints" not in names and not any(n.startswith(".staging-") for n in names)
    assert "config.json" not in names and "model.safetensors" not in names  # adapter only, never the base
    listed = [line.split("  ", 1)[1] for line in (r.out / "SHA256SUMS").read_text().splitlines()]
    assert set(listed) >= ARTIFACTS and "_COMPLETE" not in listed and "progress.json" not in listed
    assert verify_checksums(r.out) == []
    marker = json.loads((r.out / "_COMPLETE").read_text())
    assert marker["files"] == len(listed)
    assert (r.out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    cfg = json.loads((r.out / "trainer_config.json").read_text())
    assert cfg["training"]["maxSteps"] == 4 and cfg["method"] == "sft"


def test_lora_metrics(lora_run):
    m = json.loads((lora_run.out / "metrics.json").read_text())
    assert m["optimizerRequested"] == "paged_adamw_8bit" and m["optimizerUsed"] == "adamw_torch"
    assert m["targetModules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert 0 < m["trainableParameters"] < m["totalParameters"]
    assert m["steps"] == 4 and [x["step"] for x in m["trainLosses"]] == [1, 2, 3, 4]
    assert [x["step"] for x in m["evalLosses"]] == [2, 4]
    for key in ("baseline", "final"):
        assert m[key]["tokens"] > 0 and m[key]["perplexity"] == pytest.approx(math.exp(m[key]["loss"]))
    assert m["final"]["loss"] < m["baseline"]["loss"]
    assert (
        m["dataset"]["recordsRead"] == 30
        and m["dataset"]["trainRecords"] == 24
        and m["dataset"]["validationRecords"] == 6
    )
    assert m["peakMemoryBytes"] > 0 and m["peakMemoryKind"] == "cpu-max-rss"
    assert m["tokensPerSecond"] > 0 and m["trainRuntimeSeconds"] > 0
    assert len(m["samples"]) == 1 and set(m["samples"][0]) == {"prompt", "reference", "base", "tuned"}
    report = (lora_run.out / "eval_report.md").read_text()
    assert (
        "| validation | eval loss |" in report
        and "## Sample generations" in report
        and "duplicates dropped: 0" in report
    )


def test_progress_lines_and_termination_summary(lora_run):
    lines = lora_run.progress
    training = [p for p in lines if p.get("stage") == "training" and "loss" in p]
    assert sorted({p["step"] for p in training}) == [1, 2, 3, 4]
    assert all("evalLoss" in p for p in training if p["step"] >= 3)  # latest eval loss rides along
    first = training[0]
    assert first["totalSteps"] == 4 and first["percent"] == 25 and first["learningRate"] > 0
    assert {"epoch", "tokensPerSecond", "etaSeconds", "updatedAt"} <= set(first)
    stages = [p["stage"] for p in lines]
    assert stages[:2] == ["planning", "loading"] and stages[-1] == "completed"
    planned, measured = lora_run.plans  # as planned, then after two steps with the ETA
    assert "fits" not in planned and "etaSeconds" in measured  # a CPU: nothing to check against
    assert {"baseline-eval", "final-eval", "saving"} <= set(stages)
    # The progress file holds the last line.
    assert json.loads((lora_run.out / "progress.json").read_text()) == lines[-1]
    s = lora_run.summary
    assert s["outcome"] == "succeeded"
    assert s["metrics"]["evalLoss"] < s["metrics"]["baselineEvalLoss"]
    assert s["artifacts"]["path"] == str(lora_run.out)
    assert s["artifacts"]["sha256"] == artifacts.sha256_file(lora_run.out / "adapter_model.safetensors")


def test_completed_output_is_not_clobbered(lora_run, tmp_path):
    cfg = json.loads((lora_run.out / "trainer_config.json").read_text())
    cfg["reporting"]["terminationMessagePath"] = str(tmp_path / "term")
    before = {p.name: p.stat().st_mtime_ns for p in lora_run.out.iterdir() if p.name != "progress.json"}
    r = helpers.run_cli(cfg, tmp_path)
    assert r.rc == 0 and "already complete; nothing was trained" in r.summary["message"]
    assert r.summary["artifacts"]["sha256"] == lora_run.summary["artifacts"]["sha256"]
    assert {p.name: p.stat().st_mtime_ns for p in lora_run.out.iterdir() if p.name != "progress.json"} == before


def test_evaluate_command(lora_run, tiny_model, tmp_path, capsys):
    from finetune_trainer.cli import main

    data = helpers.write_jsonl(tmp_path / "heldout.jsonl", helpers.records("chat", 6, seed=5))
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_model),
                "--adapter",
                str(lora_run.out),
                "--data",
                str(data),
                "--compare-base",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "chat" and result["tokens"] > 0 and result["examples"] == 6
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["base"]["loss"] != result["loss"]
    assert main(["evaluate", "--model", "/nope", "--data", str(data)]) == 4


@pytest.mark.parametrize("fmt", ["text", "alpaca", "sharegpt", "prompt-completion"])
def test_each_format_trains(tiny_model, tmp_path, fmt):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records(fmt, 14))
    over = {"training": {"maxSteps": 1}, "evaluation": {"sampleGenerations": 0, "baseline": fmt != "text"}}
    if fmt == "text":
        over["output"] = {"dir": str(tmp_path / "out"), "merge": True}
    cfg = helpers.make_config(tiny_model, data, tmp_path / "out", **over)
    r = helpers.run_cli(cfg, tmp_path)
    assert r.rc == 0, r.summary
    m = json.loads((r.out / "metrics.json").read_text())
    assert m["dataset"]["format"] == fmt and m["steps"] == 1
    assert bool(m["baseline"]) is (fmt != "text")
    if fmt == "text":  # merged full model, checksummed too
        assert (r.out / "merged" / "model.safetensors").is_file()
        assert any(
            line.endswith("  merged/model.safetensors") for line in (r.out / "SHA256SUMS").read_text().splitlines()
        )
        # The merged model alone scores what base + adapter score.
        from finetune_trainer.methods import EvaluateRequest, evaluate_command

        with_adapter = evaluate_command(EvaluateRequest(str(tiny_model), str(data), adapter=str(r.out)))
        merged = evaluate_command(EvaluateRequest(str(r.out / "merged"), str(data)))
        assert merged["tokens"] == with_adapter["tokens"] and merged["loss"] == pytest.approx(
            with_adapter["loss"], rel=1e-4
        )
        assert evaluate_command(EvaluateRequest(str(tiny_model), str(data)))["loss"] != pytest.approx(
            merged["loss"], rel=1e-4
        )
    assert verify_checksums(r.out) == []


def test_tokenization_masks_only_answers(tiny_model):
    from transformers import AutoTokenizer

    from finetune_trainer.sft import tokenize_example

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    msgs = [
        {"role": "user", "content": "what is one"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "and two"},
        {"role": "assistant", "content": "two two"},
    ]
    ids, mask = tokenize_example(tok, {"messages": msgs}, completion_only=True)
    trained = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trained == "one<|im_end|>\ntwo two<|im_end|>\n"
    ids, mask = tokenize_example(tok, {"prompt": "2+2=", "completion": " 4"}, completion_only=True)
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == " 4<|im_end|>"
    ids, mask = tokenize_example(tok, {"messages": msgs}, completion_only=False)
    assert all(mask)


def test_qlora_4bit_on_cpu(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("prompt-completion", 14))
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "out",
        peft={"type": "qlora", "r": 4, "alpha": 8, "targetModules": ["all-linear"]},
        training={"maxSteps": 2, "packing": True, "gradientCheckpointing": True},
        evaluation={"sampleGenerations": 0},
    )
    r = helpers.run_cli(cfg, tmp_path)
    assert r.rc == 0, r.summary
    m = json.loads((r.out / "metrics.json").read_text())
    assert m["peftType"] == "qlora" and m["baseQuantization"] == "nf4"
    assert m["targetModules"] == "all-linear" and m["steps"] == 2
    adapter_cfg = json.loads((r.out / "adapter_config.json").read_text())
    assert {t.rsplit(".", 1)[-1] for t in adapter_cfg["target_modules"]} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert math.isfinite(m["final"]["loss"])
    # Gradients reached the lowest layer through the frozen 4-bit layers above it, after the
    # baseline evaluation ran them in eval mode (bitsandbytes' CPU inference repacking is off).
    from safetensors.torch import load_file

    weights = load_file(str(r.out / "adapter_model.safetensors"))
    first = [k for k in weights if ".layers.0." in k and "lora_B" in k]
    assert first and all(weights[k].abs().sum() > 0 for k in first)


def test_cpu_4bit_layers_stay_differentiable_after_eval(tiny_model):
    """bitsandbytes repacks 4-bit weights for CPU inference (AVX512-BF16) the first time a layer
    runs in eval mode without grad, after which its matmul has no backward; the trainer turns that
    off, so a baseline evaluation cannot break the training that follows."""
    import torch

    from finetune_api.training import QuantizationSpec
    from finetune_trainer.models import ModelLocation, load_causal_lm

    model = load_causal_lm(ModelLocation(str(tiny_model), str(tiny_model)), QuantizationSpec())
    layer = model.model.layers[0].self_attn.q_proj
    assert type(layer).__name__ == "Linear4bit" and layer.support_avx512bf16_for_cpu is False
    x = torch.randn(2, layer.in_features)
    model.eval()
    with torch.no_grad():
        layer(x)
    model.train()
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_resume_from_checkpoint_after_crash(tiny_model, tmp_path, caplog):
    from finetune_trainer.sft import SFTMethod

    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 20))
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "out",
        training={"maxSteps": 4, "saveSteps": 2},
        evaluation={"sampleGenerations": 0},
    )

    with helpers.crash_at_step(SFTMethod, 3, "simulated node failure"):
        r1 = helpers.run_cli(cfg, tmp_path)
    assert r1.rc == 1 and r1.summary["reason"] == "TrainerError" and "simulated node failure" in r1.summary["message"]
    assert (r1.out / "checkpoints" / "checkpoint-2").is_dir()
    assert not (r1.out / "_COMPLETE").exists() and not list(r1.out.glob(".staging-*"))
    assert r1.progress[-1]["stage"] == "failed"

    with caplog.at_level("INFO", logger="finetune_trainer"):
        r2 = helpers.run_cli(cfg, tmp_path)
    assert r2.rc == 0, r2.summary
    assert "resuming from checkpoint-2" in caplog.text
    steps = sorted({p["step"] for p in r2.progress if p.get("stage") == "training" and "loss" in p})
    assert steps == [3, 4]  # continued, not from scratch
    m = json.loads((r2.out / "metrics.json").read_text())
    assert m["resumedFromStep"] == 2 and m["steps"] == 4
    assert [x["step"] for x in m["trainLosses"]] == [1, 2, 3, 4]  # history restored from the checkpoint
    assert m["baseline"]  # reused from the first attempt
    assert not (r2.out / "checkpoints").exists()


def test_failure_before_publish_leaves_nothing_complete(tiny_model, tmp_path, monkeypatch):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("chat", 14))
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "out",
        training={"maxSteps": 1},
        evaluation={"sampleGenerations": 0, "baseline": False},
    )
    real_write = artifacts.write_atomic

    def failing_write(path, text):
        if Path(path).name == "SHA256SUMS":
            raise OSError("disk full")
        return real_write(path, text)

    # Crash in the middle of publishing: the files are moved but SHA256SUMS/_COMPLETE never written.
    monkeypatch.setattr(artifacts, "write_atomic", failing_write)
    r1 = helpers.run_cli(cfg, tmp_path)
    assert r1.rc == 1 and "disk full" in r1.summary["message"]
    assert (r1.out / "adapter_model.safetensors").exists()
    assert not (r1.out / "_COMPLETE").exists() and not (r1.out / "SHA256SUMS").exists()

    # Crash before publishing: nothing at all appears in the output directory.
    monkeypatch.setattr(artifacts, "write_atomic", real_write)
    monkeypatch.setattr(pipeline, "publish", lambda out: (_ for _ in ()).throw(RuntimeError("killed")))
    cfg2 = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "out2",
        training={"maxSteps": 1},
        evaluation={"sampleGenerations": 0, "baseline": False},
    )
    r2 = helpers.run_cli(cfg2, tmp_path, "c2.json")
    assert r2.rc == 1
    assert sorted(p.name for p in r2.out.iterdir()) == ["_RUN", "checkpoints", "progress.json"]

    # The next attempt completes the first directory properly.
    monkeypatch.undo()
    r3 = helpers.run_cli(cfg, tmp_path)
    assert r3.rc == 0 and (r3.out / "_COMPLETE").is_file() and verify_checksums(r3.out) == []


def test_the_warmup_is_a_ratio_of_the_steps(tmp_path):
    """training.warmupRatio reaches transformers as the fraction of the steps it warms up over
    (warmup_steps below 1, which transformers reads as a ratio since 5.0: the floor in pyproject.toml)."""
    from types import SimpleNamespace

    from transformers import TrainingArguments

    from finetune_api.training import TrainerConfig

    config = TrainerConfig.model_validate(
        {
            "model": {"source": "/models/m"},
            "dataset": {"source": "/data/train.jsonl"},
            "training": {"warmupRatio": 0.05},
            "output": {"dir": str(tmp_path)},
        }
    )
    ctx = SimpleNamespace(config=config, eval_dataset=None, out=SimpleNamespace(checkpoints=tmp_path / "ckpt"))
    args = TrainingArguments(**pipeline.common_training_args(ctx, "adamw_torch"))
    assert args.get_warmup_steps(1000) == 50 and args.get_warmup_steps(10) == 1
