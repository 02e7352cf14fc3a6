"""method: dpo on a tiny random Llama (built by the trainer conftest): preference metrics before
and after, the string and chat-message record forms, continuing from an SFT adapter, the
``evaluate`` command on preference data, and every bad-input case (exit code + file/line/field)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random

import pytest

from finetune_api.protocol import ExitCode
from finetune_api.training import DatasetFormat
from finetune_trainer import dpo
from finetune_trainer.data import read_records
from finetune_trainer.errors import DataError
from finetune_trainer.formats import validate_preference
from support import trainer as helpers

pytestmark = pytest.mark.usefixtures("one_thread")


def pairs(n: int, seed: int = 0, chat: bool = False) -> list[dict]:
    """Chosen: the right sum in a fixed phrase; rejected: a wrong, rambling answer."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        prompt = f"what is {a} plus {b} ({i})"
        chosen = f"the answer is {a + b}"
        rejected = f"error error {rng.choice(['red', 'blue', 'green'])} {a * b + 1} failed failed"
        if chat:
            out.append(
                {
                    "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                }
            )
        else:
            out.append({"prompt": prompt + " =", "chosen": " " + chosen, "rejected": " " + rejected})
    return out


def dpo_config(model, train, out, **over):
    cfg = helpers.make_config(model, train, out, **over)
    cfg["method"] = "dpo"
    cfg["training"] = {
        **cfg["training"],
        "maxSteps": over.get("training", {}).get("maxSteps", 12),
        "batchSize": 4,
        "learningRate": 2e-2,
        "dpoBeta": 0.5,
    }
    return cfg


@pytest.fixture(scope="module")
def dpo_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    train = helpers.write_jsonl(tmp / "prefs.jsonl", pairs(40))
    run = helpers.run_cli(dpo_config(tiny_model, train, tmp / "out", dataset={"validationSplit": 0.25}), tmp)
    return run, train


def test_dpo_end_to_end_preference_metrics_before_and_after(dpo_run):
    run, _ = dpo_run
    assert run.rc == 0, run.summary
    m = json.loads((run.out / "metrics.json").read_text())
    assert m["method"] == "dpo"
    base, final = m["baseline"], m["final"]
    # Before training the policy is the reference: zero rewards, DPO loss log 2.
    assert base["rewardMargin"] == pytest.approx(0.0, abs=1e-5) and base["rewardAccuracy"] == 0.0
    assert base["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert 0.0 <= base["accuracy"] <= 1.0 and base["pairs"] == final["pairs"] == 10
    # After: chosen answers out-reward rejected ones on held-out pairs.
    assert final["rewardMargin"] > 0.5
    assert final["rewardAccuracy"] >= 0.8
    assert final["loss"] < base["loss"]
    assert final["chosenReward"] > final["rejectedReward"]
    assert final["accuracy"] >= base["accuracy"]
    assert final["perplexity"] > 0
    s = run.summary["metrics"]
    assert "baselineAccuracy" in s and "accuracy" in s and s["evalLoss"] < s["baselineEvalLoss"]
    assert s["rewardMargin"] == pytest.approx(final["rewardMargin"], abs=1e-5) and "baselineRewardMargin" in s
    report = (run.out / "eval_report.md").read_text()
    assert "## Preference (DPO)" in report and "mean reward margin" in report
    assert "reference: the base model (adapter disabled)" in report


def test_dpo_saves_only_the_trained_adapter(dpo_run):
    run, _ = dpo_run
    out = run.out
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not (out / "ref").exists()  # TRL's frozen reference copy is not an artifact
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        assert not any(".ref." in k for k in f.keys())
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_evaluate_command_on_preference_data(dpo_run, tiny_model):
    run, train = dpo_run
    from finetune_trainer.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(
            [
                "evaluate",
                "--model",
                str(tiny_model),
                "--adapter",
                str(run.out),
                "--data",
                str(train),
                "--max-seq-length",
                "64",
            ]
        )
    assert rc == 0
    res = json.loads(buf.getvalue())
    assert res["method"] == "dpo" and res["pairs"] == 40
    assert res["rewardMargin"] > 0 and res["rewardAccuracy"] >= 0.8
    # Without an adapter the model is its own reference.
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["evaluate", "--model", str(tiny_model), "--data", str(train), "--max-seq-length", "64"]) == 0
    assert json.loads(buf.getvalue())["rewardMargin"] == pytest.approx(0.0, abs=1e-6)


def test_chat_message_form(tiny_model, tmp_path):
    train = helpers.write_jsonl(tmp_path / "chat.jsonl", pairs(16, chat=True))
    run = helpers.run_cli(
        dpo_config(tiny_model, train, tmp_path / "out", training={"maxSteps": 3}, dataset={"validationSplit": 0.25}),
        tmp_path,
    )
    assert run.rc == 0, run.summary
    m = json.loads((run.out / "metrics.json").read_text())
    assert m["dataset"]["format"] == "preference" and m["final"]["pairs"] == 4
    # The chat template was applied: the answer follows the assistant header.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    _, recs = read_records(train, DatasetFormat.PREFERENCE)
    ex = dpo.tokenize_pair(tok, recs[0].data)
    assert tok.decode(ex["prompt_ids"]).endswith("<|im_start|>assistant\n")
    assert tok.decode(ex["chosen_ids"]).startswith("the answer is")


def test_chosen_and_rejected_strings_with_a_chat_prompt_become_assistant_messages():
    rec = validate_preference({"prompt": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": "go away"})
    assert rec["chosen"] == [{"role": "assistant", "content": "hello"}]
    assert rec["rejected"] == [{"role": "assistant", "content": "go away"}]


def test_continue_from_an_sft_adapter(tiny_model, tmp_path):
    """DPO after SFT: model.adapter is loaded trainable; the reference is a frozen copy of it."""
    sft_data = helpers.write_jsonl(tmp_path / "sft.jsonl", helpers.records("prompt-completion", 16))
    sft = helpers.run_cli(
        helpers.make_config(
            tiny_model, sft_data, tmp_path / "sft", peft={"r": 2, "alpha": 4}, training={"maxSteps": 3}
        ),
        tmp_path,
        "sft.json",
    )
    assert sft.rc == 0, sft.summary
    train = helpers.write_jsonl(tmp_path / "prefs.jsonl", pairs(24))
    cfg = dpo_config(tiny_model, train, tmp_path / "dpo", training={"maxSteps": 6}, dataset={"validationSplit": 0.25})
    cfg["model"]["adapter"] = str(sft.out)
    run = helpers.run_cli(cfg, tmp_path, "dpo.json")
    assert run.rc == 0, run.summary
    m = json.loads((run.out / "metrics.json").read_text())
    assert json.loads((run.out / "adapter_config.json").read_text())["r"] == 2  # the SFT adapter's settings
    assert m["baseline"]["rewardMargin"] == pytest.approx(0.0, abs=1e-5)
    assert m["final"]["rewardMargin"] > 0
    assert f"reference: the starting adapter `{sft.out}`" in (run.out / "eval_report.md").read_text()
    # the SFT adapter's own files are untouched
    assert (sft.out / "_COMPLETE").is_file()


def test_missing_adapter_is_model_not_found(tiny_model, tmp_path):
    train = helpers.write_jsonl(tmp_path / "prefs.jsonl", pairs(12))
    cfg = dpo_config(tiny_model, train, tmp_path / "out")
    cfg["model"]["adapter"] = str(tmp_path / "nowhere")
    run = helpers.run_cli(cfg, tmp_path)
    assert run.rc == ExitCode.MODEL_NOT_FOUND and '"model.adapter"' in run.summary["message"]


# --- bad input -----------------------------------------------------------------------------------


def test_data_without_rejected_answers_points_to_sft(tiny_model, tmp_path):
    # prompt/completion records: the method cannot use them
    data = helpers.write_jsonl(tmp_path / "pc.jsonl", helpers.records("prompt-completion", 12))
    run = helpers.run_cli(dpo_config(tiny_model, data, tmp_path / "o1"), tmp_path)
    assert run.rc == ExitCode.INVALID_DATA and run.summary["reason"] == "InvalidData"
    assert run.summary["message"].startswith("pc.jsonl:1: records are in 'prompt-completion' format")
    assert "no rejected answers: train on it with method sft" in run.summary["message"]
    # preference records with a rejected answer missing on line 3
    rows = pairs(12)
    del rows[2]["rejected"]
    data = helpers.write_jsonl(tmp_path / "p.jsonl", rows)
    run = helpers.run_cli(dpo_config(tiny_model, data, tmp_path / "o2"), tmp_path)
    assert run.rc == ExitCode.INVALID_DATA
    assert run.summary["message"].startswith('p.jsonl:3: field "rejected": missing: DPO learns from a rejected answer')
    assert "method sft" in run.summary["message"]
    # a chat dataset format with method dpo is refused by the config itself
    run = helpers.run_cli(dpo_config(tiny_model, data, tmp_path / "o3", dataset={"format": "chat"}), tmp_path)
    assert run.rc == ExitCode.INVALID_CONFIG and "use method sft" in run.summary["message"]


@pytest.mark.parametrize(
    "record, field, problem",
    [
        ({"chosen": "a", "rejected": "b"}, "prompt", "missing"),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt", "expected a string, got int 3"),
        (
            {"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"},
            "chosen",
            "is a chat message (list), but the prompt is a string",
        ),
        (
            {
                "prompt": [{"role": "user", "content": "p"}],
                "chosen": [{"role": "user", "content": "a"}],
                "rejected": "b",
            },
            "chosen[0].role",
            "expected 'assistant' (an answer), got \"user\"",
        ),
        (
            {"prompt": [{"role": "user", "content": "p"}], "chosen": [], "rejected": "b"},
            "chosen",
            "expected a non-empty list",
        ),
        (
            {"prompt": [{"role": "robot", "content": "p"}], "chosen": "a", "rejected": "b"},
            "prompt[0].role",
            "expected one of",
        ),
        (
            {
                "prompt": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "x"}],
                "chosen": "a",
                "rejected": "b",
            },
            "prompt[1].role",
            "ends with an assistant message",
        ),
        ({"prompt": "p", "chosen": None, "rejected": "b"}, "chosen", "missing"),
    ],
)
def test_bad_preference_records_name_line_and_field(tmp_path, record, field, problem):
    path = helpers.write_jsonl(tmp_path / "prefs.jsonl", pairs(3) + [record])
    with pytest.raises(DataError) as e:
        read_records(path, DatasetFormat.AUTO, {DatasetFormat.PREFERENCE})
    assert e.value.message.startswith(f'prefs.jsonl:4: field "{field}": ')
    assert problem in e.value.message


def test_mixed_string_and_chat_records_are_refused(tiny_model, tmp_path):
    rows = pairs(10) + pairs(1, chat=True) + pairs(2)
    data = helpers.write_jsonl(tmp_path / "mixed.jsonl", rows)
    run = helpers.run_cli(dpo_config(tiny_model, data, tmp_path / "o", dataset={"validationSplit": 0.0}), tmp_path)
    assert run.rc == ExitCode.INVALID_DATA
    assert run.summary["message"].startswith(
        'mixed.jsonl:11: field "prompt": has a chat-message prompt unlike the other records'
    )


def test_identical_pairs_are_dropped_and_counted(tiny_model, tmp_path):
    rows = pairs(12)
    rows[0]["rejected"] = rows[0]["chosen"]
    data = helpers.write_jsonl(tmp_path / "prefs.jsonl", rows)
    run = helpers.run_cli(
        dpo_config(
            tiny_model,
            data,
            tmp_path / "o",
            training={"maxSteps": 1},
            dataset={"validationSplit": 0.0},
            evaluation={"baseline": False},
        ),
        tmp_path,
    )
    assert run.rc == 0, run.summary
    m = json.loads((run.out / "metrics.json").read_text())
    assert m["dataset"]["identicalPairsDropped"] == 1


def test_dpo_with_qlora(tiny_model, tmp_path):
    """QLoRA: a 4-bit base (bitsandbytes on CPU), the LoRA adapter and TRL's reference copy in fp32."""
    train = helpers.write_jsonl(tmp_path / "prefs.jsonl", pairs(16))
    cfg = dpo_config(
        tiny_model,
        train,
        tmp_path / "out",
        training={"maxSteps": 3},
        dataset={"validationSplit": 0.25},
        peft={"type": "qlora", "r": 4, "alpha": 8, "targetModules": ["auto"]},
        evaluation={"sampleGenerations": 0},
    )
    run = helpers.run_cli(cfg, tmp_path)
    assert run.rc == 0, run.summary
    m = json.loads((run.out / "metrics.json").read_text())
    assert m["peftType"] == "qlora" and m["baseQuantization"] == "nf4" and m["steps"] == 3
    assert m["baseline"]["rewardMargin"] == pytest.approx(0.0, abs=1e-5)
    assert math.isfinite(m["final"]["loss"]) and m["final"]["rewardMargin"] != 0.0


def test_dpo_resumes_from_a_checkpoint(tiny_model, tmp_path, caplog):
    """The policy adapter comes back from the checkpoint; TRL's frozen reference is rebuilt, not resumed."""
    from finetune_trainer.dpo import DPOMethod

    train = helpers.write_jsonl(tmp_path / "prefs.jsonl", pairs(24))
    cfg = dpo_config(
        tiny_model,
        train,
        tmp_path / "out",
        training={"maxSteps": 4},
        dataset={"validationSplit": 0.25},
        evaluation={"sampleGenerations": 0},
    )
    cfg["training"]["saveSteps"] = 2

    with helpers.crash_at_step(DPOMethod, 3, "simulated preemption"):
        first = helpers.run_cli(cfg, tmp_path)
    assert first.rc == 1 and (first.out / "checkpoints" / "checkpoint-2").is_dir()
    with caplog.at_level("INFO", logger="finetune_trainer"):
        second = helpers.run_cli(cfg, tmp_path)
    assert second.rc == 0, second.summary
    assert "resuming from checkpoint-2" in caplog.text
    m = json.loads((second.out / "metrics.json").read_text())
    assert m["resumedFromStep"] == 2 and m["steps"] == 4
    assert m["baseline"]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # the saved baseline
    # The reference is still the starting point (zero adapter), so rewards measure what training did.
    assert m["final"]["rewardMargin"] > 0 and m["final"]["loss"] < m["baseline"]["loss"]
    from safetensors import safe_open

    with safe_open(str(second.out / "adapter_model.safetensors"), "pt") as f:
        assert not any(".ref." in k for k in f.keys())
