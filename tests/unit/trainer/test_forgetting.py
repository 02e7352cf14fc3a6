"""The forgetting check (evaluation.generalSource): general-text perplexity before and after
training next to the domain evaluation, as the 2x2 table in metrics.json and eval_report.md."""

from __future__ import annotations

import json

import pytest

from finetune_api.protocol import ExitCode
from finetune_trainer import forgetting
from support import trainer as helpers

GENERAL = [
    "the red node had a high latency in the network",
    "a user asked a question and the assistant gave an answer",
    "one two three four five six seven eight nine ten",
    "the service status is green and the disk is ok",
    "what is the level of the host memory",
    "translate the summary to json for the system",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_sft_run_reports_the_2x2_table(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "domain.jsonl", helpers.records("prompt-completion", 24))
    general = helpers.write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in GENERAL])
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "out",
        training={"maxSteps": 8, "learningRate": 2e-2},
        evaluation={"generalSource": str(general), "sampleGenerations": 0},
    )
    run = helpers.run_cli(cfg, tmp_path)
    assert run.rc == 0, run.summary
    m = json.loads((run.out / "metrics.json").read_text())
    f = m["forgetting"]
    d, g = f["domain"], f["general"]
    assert g["set"] == "general.jsonl" and d["set"] == "validation"
    for row in (d, g):
        assert row["perplexityBefore"] > 1 and row["perplexityAfter"] > 1
        assert row["perplexityChange"] == pytest.approx(row["perplexityAfter"] / row["perplexityBefore"] - 1)
    assert d["perplexityBefore"] == pytest.approx(m["baseline"]["perplexity"])
    assert g["perplexityAfter"] == pytest.approx(m["generalFinal"]["perplexity"])
    assert d["perplexityAfter"] < d["perplexityBefore"]  # the domain was learned
    assert "general perplexity" in f["verdict"]
    s = run.summary["metrics"]
    assert s["generalBaselinePerplexity"] == pytest.approx(g["perplexityBefore"], rel=1e-5)
    assert s["generalPerplexity"] == pytest.approx(g["perplexityAfter"], rel=1e-5)
    report = (run.out / "eval_report.md").read_text()
    assert "## Forgetting check: domain vs general text" in report
    assert "| domain (validation) |" in report and "| general (general.jsonl) |" in report
    assert f"Verdict: {f['verdict']}." in report


def test_dpo_run_reports_it_too(tiny_model, tmp_path):
    prefs = [
        {"prompt": f"what is {i} plus 1 =", "chosen": f" the answer is {i + 1}", "rejected": " error error failed"}
        for i in range(16)
    ]
    data = helpers.write_jsonl(tmp_path / "prefs.jsonl", prefs)
    general = helpers.write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in GENERAL])
    cfg = helpers.make_config(
        tiny_model,
        data,
        tmp_path / "out",
        dataset={"validationSplit": 0.25},
        training={"maxSteps": 3},
        evaluation={"generalSource": str(general), "sampleGenerations": 0},
    )
    cfg["method"] = "dpo"
    run = helpers.run_cli(cfg, tmp_path)
    assert run.rc == 0, run.summary
    f = json.loads((run.out / "metrics.json").read_text())["forgetting"]
    # domain perplexity for DPO: of the chosen answers
    assert f["domain"]["perplexityBefore"] > 1 and f["general"]["perplexityBefore"] > 1
    assert f["general"]["perplexityAfter"] > 1
    assert "## Forgetting check" in (run.out / "eval_report.md").read_text()


def test_no_general_source_no_table(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "domain.jsonl", helpers.records("text", 12))
    run = helpers.run_cli(
        helpers.make_config(
            tiny_model, data, tmp_path / "out", training={"maxSteps": 1}, evaluation={"sampleGenerations": 0}
        ),
        tmp_path,
    )
    assert run.rc == 0, run.summary
    assert "forgetting" not in json.loads((run.out / "metrics.json").read_text())
    assert "Forgetting check" not in (run.out / "eval_report.md").read_text()


def test_bad_general_source_is_invalid_data(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "domain.jsonl", helpers.records("text", 12))
    general = tmp_path / "general.jsonl"
    general.write_text('{"text": "fine"}\n{"text": 5}\n')
    run = helpers.run_cli(
        helpers.make_config(tiny_model, data, tmp_path / "out", evaluation={"generalSource": str(general)}), tmp_path
    )
    assert run.rc == ExitCode.INVALID_DATA
    assert run.summary["message"].startswith('general.jsonl:2: field "text": expected a string')


def test_table_and_verdicts():
    m = {
        "baseline": {"perplexity": 20.0, "loss": 3.0},
        "final": {"perplexity": 10.0, "loss": 2.3},
        "generalBaseline": {"perplexity": 30.0},
        "generalFinal": {"perplexity": 36.0},
    }
    t = forgetting.forgetting_table(m, "wiki.jsonl")
    assert t["domain"]["perplexityChange"] == pytest.approx(-0.5)
    assert t["general"]["perplexityChange"] == pytest.approx(0.2)
    assert "forgetting general text" in t["verdict"] and "-50.0%" in t["verdict"]
    assert "no measurable forgetting" in forgetting.verdict(-0.3, 0.01)
    assert "improved too" in forgetting.verdict(-0.3, -0.2)
    lines = forgetting.apply(m, "wiki.jsonl")
    assert m["forgetting"] == t and "| general (wiki.jsonl) | 30.000 | 36.000 | +20.0% |" in lines
    assert forgetting.forgetting_table({"baseline": {"perplexity": 2.0}}) is None
    assert forgetting.apply({"final": {}}) == []
