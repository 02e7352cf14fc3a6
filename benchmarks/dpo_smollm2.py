#!/usr/bin/env python3
"""Benchmark: a short DPO run (LoRA) of SmolLM2-135M-Instruct on CPU, through finetune-train.

Preference task from the log-intent demo: the prompt asks for the intent of a network log line
(link-state, dhcp, auth, routing, anomaly); the chosen answer is the right label, the rejected
one a wrong label. Training pairs come from the demo's training split, held-out pairs from its
evaluation split (other message templates and vendors). Reports, before and after training,
the preference accuracy (the model gives the right label a higher log-probability than the
wrong one), DPO's reward accuracy and mean reward margin, the DPO loss, and greedy answers on a
few held-out prompts.

With ``--sft-steps N`` it first trains an SFT adapter for N steps on the same training lines
(prompt + chosen answer as chat), then runs DPO continuing from it (``model.adapter``), the
SFT-then-DPO recipe; "before" is then the SFT adapter (also the DPO reference), and the base
model's figures are printed next to it (``finetune-train evaluate`` without an adapter).

    .venv/bin/python benchmarks/dpo_smollm2.py [--steps 30] [--train 120] [--heldout 40] [--threads 1]
        [--sft-steps 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer_run import run_trainer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "log-intent"
LABELS = ["link-state", "dhcp", "auth", "routing", "anomaly"]
SYSTEM = (
    "You sort network log lines by intent. Reply with exactly one label: link-state, dhcp, auth, routing or anomaly."
)


def pairs(split: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = [json.loads(line) for line in (EXAMPLE / f"{split}.jsonl").read_text().splitlines()]
    out = []
    for r in rng.sample(rows, n):
        wrong = rng.choice([x for x in LABELS if x != r["label"]])
        out.append(
            {
                "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["text"]}],
                "chosen": [{"role": "assistant", "content": r["label"]}],
                "rejected": [{"role": "assistant", "content": wrong}],
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--train", type=int, default=120)
    ap.add_argument("--heldout", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--sft-steps", type=int, default=0, help="first train an SFT adapter for this many steps, then DPO from it"
    )
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file (e.g. benchmarks/results/...)")
    a = ap.parse_args(argv)
    work = a.out or Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    shutil.rmtree(work / "out", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", pairs("train", a.train, 1)), ("heldout", pairs("eval", a.heldout, 2))):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS=str(a.threads),
        MKL_NUM_THREADS=str(a.threads),
        TOKENIZERS_PARALLELISM="false",
    )
    sft_info, base_metrics = None, None
    if a.sft_steps:
        shutil.rmtree(work / "sft", ignore_errors=True)
        rows = [json.loads(x) for x in (work / "train.jsonl").read_text().splitlines()]
        (work / "sft.jsonl").write_text(
            "".join(json.dumps({"messages": r["prompt"] + r["chosen"]}) + "\n" for r in rows)
        )
        sft_config = {
            "method": "sft",
            "model": {"source": "builtin:smollm2-135m-instruct"},
            "dataset": {"source": str(work / "sft.jsonl"), "validationSplit": 0.0},
            "peft": {"type": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "targetModules": ["auto"]},
            "training": {
                "maxSteps": a.sft_steps,
                "batchSize": a.batch,
                "gradientAccumulationSteps": 1,
                "learningRate": a.sft_lr,
                "warmupRatio": 0.1,
                "loggingSteps": 5,
                "maxSeqLength": 256,
                "gradientCheckpointing": False,
                "optimizer": "adamw_torch",
                "saveSteps": 10_000,
            },
            "evaluation": {"sampleGenerations": 0},
            "output": {"dir": str(work / "sft")},
            "reporting": {"terminationMessagePath": str(work / "sft-termination.json")},
        }
        t_sft = time.time()
        run_trainer(sft_config, work / "sft-config.json", a.threads)
        sft_info = {"steps": a.sft_steps, "learningRate": a.sft_lr, "wallSeconds": round(time.time() - t_sft, 1)}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "finetune_trainer",
                "evaluate",
                "--model",
                "builtin:smollm2-135m-instruct",
                "--data",
                str(work / "heldout.jsonl"),
                "--max-seq-length",
                "256",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            return 1
        base_metrics = json.loads(proc.stdout)
    config = {
        "method": "dpo",
        "model": {"source": "builtin:smollm2-135m-instruct"},
        "dataset": {
            "source": str(work / "train.jsonl"),
            "validationSource": str(work / "heldout.jsonl"),
            "format": "preference",
        },
        "peft": {"type": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "targetModules": ["auto"]},
        "training": {
            "maxSteps": a.steps,
            "batchSize": a.batch,
            "gradientAccumulationSteps": 1,
            "learningRate": a.lr,
            "lrScheduler": "cosine",
            "warmupRatio": 0.1,
            "loggingSteps": 5,
            "maxSeqLength": 256,
            "gradientCheckpointing": False,
            "optimizer": "adamw_torch",
            "dpoBeta": a.beta,
            "evalSteps": 10_000,
            "saveSteps": 10_000,
        },
        "evaluation": {"sampleGenerations": 5, "maxNewTokens": 6},
        "output": {"dir": str(work / "out")},
        "reporting": {"terminationMessagePath": str(work / "termination.json")},
    }
    if sft_info:
        config["model"]["adapter"] = str(work / "sft")
    m, wall = run_trainer(config, work / "config.json", a.threads)
    b, f = m["baseline"], m["final"]
    keys = ("accuracy", "rewardAccuracy", "rewardMargin", "chosenReward", "rejectedReward", "loss", "perplexity")
    result = {
        "model": "SmolLM2-135M-Instruct (LoRA r=16 on q/k/v/o, fp32 CPU)",
        "trainPairs": m["dataset"]["trainRecords"],
        "heldoutPairs": f["pairs"],
        "steps": m["steps"],
        "beta": a.beta,
        "learningRate": a.lr,
        "batchSize": a.batch,
        "sft": sft_info,
        "baseModel": {k: round(base_metrics[k], 4) for k in keys} if base_metrics else None,
        "before": {k: round(b[k], 4) for k in keys},
        "after": {k: round(f[k], 4) for k in keys},
        "samples": [
            {
                "line": s["prompt"].split("[user] ", 1)[-1][:120],
                "expected": s["reference"].split("\n")[0].removeprefix("chosen: "),
                "base": s["base"],
                "tuned": s["tuned"],
            }
            for s in m["samples"]
        ],
        "trainRuntimeSeconds": m["trainRuntimeSeconds"],
        "wallSeconds": round(wall, 1),
        "threads": a.threads,
        "loadAverage1m": round(os.getloadavg()[0], 1),
        "adapterBytes": (work / "out" / "adapter_model.safetensors").stat().st_size,
    }
    print(
        f"pairs            {result['trainPairs']} train / {result['heldoutPairs']} held-out, "
        f"{m['steps']} steps, beta {a.beta}"
    )
    if sft_info:
        print(
            f"started from an SFT adapter ({a.sft_steps} steps, {sft_info['wallSeconds']:.0f} s); "
            "reference = that adapter"
        )
        print(f"{'':16} {'base':>8} {'SFT':>8} {'SFT+DPO':>8}")
    else:
        print(f"{'':16} {'before':>8} {'after':>8}")
    for k, label in (
        ("accuracy", "pref. accuracy"),
        ("rewardAccuracy", "reward accuracy"),
        ("rewardMargin", "reward margin"),
        ("loss", "DPO loss"),
        ("perplexity", "chosen ppl"),
    ):
        first = f"{base_metrics[k]:8.3f} " if base_metrics else ""
        print(f"{label:16} {first}{b[k]:8.3f} {f[k]:8.3f}")
    print(f"wall time        {wall:.0f} s (training {m['trainRuntimeSeconds']:.0f} s, {a.threads} thread(s))")
    for s in result["samples"]:
        print(f"  {s['expected']:>10} | before: {s['base']!r:26} | after: {s['tuned']!r}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
