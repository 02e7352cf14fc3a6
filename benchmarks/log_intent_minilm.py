#!/usr/bin/env python3
"""Benchmark: the log-intent demo (examples/log-intent) on the real MiniLM-L6 encoder, on CPU.

Runs ``finetune-train`` with the TrainerConfig the operator would build from
``examples/log-intent/finetunejob.yaml`` (same method, model, LoRA and training settings), with
the committed train.jsonl / eval.jsonl in place of the PVC paths, once per seed. Then it scores
the adapter on each split separately, as ``finetune-train evaluate --adapter`` does:

- ``eval``: message templates the training split never uses, on the same five vendors (the
  trainer's own validation split);
- ``holdout``: three vendors (Nokia SR OS, Extreme EXOS, Dell OS10) that no training template uses;
- ``blind``: lines written by hand by someone who never saw the generator, from vendors and daemons
  that its first version did not use (``blind.jsonl``, see ``BLIND.md``). Never used to choose
  settings: tune with ``--splits eval holdout``.

Prints, per split and seed, accuracy, macro-F1 and per-class F1, the confusion matrix summed
over the seeds, the adapter size and the wall time; checks the targets (accuracy >= 95 % on the
vendors and phrasings training never saw, adapter < 5 MB, < 5 minutes on a 2-core machine) and
writes every figure to ``--json``.

    .venv/bin/python benchmarks/log_intent_minilm.py [--seeds 42 1 7] [--splits eval holdout blind]
        [--threads 1] [--out DIR] [--json FILE] [--set training.epochs=3 ...]

``--threads``: torch threads (OMP_NUM_THREADS). On a 2-core machine shared with other work, one
thread is several times faster than two (two OpenMP threads mostly wait for each other).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from trainer_run import run_evaluate, run_trainer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "log-intent"
SPLITS = ("eval", "holdout", "blind")
# The 95 % target is on lines from vendors and phrasings training never saw: holdout and blind.
UNSEEN_SPLITS = ("holdout", "blind")
TARGET_ACCURACY, TARGET_ADAPTER_BYTES, TARGET_SECONDS = 0.95, 5_000_000, 300


def trainer_config(out: Path) -> dict:
    import yaml

    from finetune_api.resource import FineTuneJobSpec
    from finetune_api.runconfig import trainer_config as build

    manifest = yaml.safe_load((EXAMPLE / "finetunejob.yaml").read_text())
    spec = FineTuneJobSpec.model_validate(manifest["spec"])
    cfg = build(spec, "default", manifest["metadata"]["name"], uid="log-intent-benchmark").to_wire()
    cfg["dataset"]["source"] = str(EXAMPLE / "train.jsonl")
    cfg["dataset"]["validationSource"] = str(EXAMPLE / "eval.jsonl")
    cfg["output"]["dir"] = str(out / "artifacts")
    cfg["reporting"] = {
        "terminationMessagePath": str(out / "termination.json"),
        "progressFile": str(out / "progress.json"),
    }
    return cfg


def split_figures(metrics: dict, baseline: dict | None) -> dict:
    out = {
        "examples": metrics["examples"],
        "accuracy": metrics["accuracy"],
        "macroF1": metrics["macroF1"],
        "perClassF1": {k: round(v["f1"], 4) for k, v in metrics["perClass"].items()},
        "confusionMatrix": metrics["confusionMatrix"],
    }
    if baseline:
        out["baselineAccuracy"] = baseline["accuracy"]
    return out


def score_split(cfg: dict, adapter: Path, data: Path, threads: int) -> dict:
    """The adapter on one more split, scored by ``finetune-train evaluate`` (untrained head too)."""
    m = run_evaluate(
        [
            "--model",
            cfg["model"]["source"],
            "--adapter",
            str(adapter),
            "--data",
            str(data),
            "--max-seq-length",
            str(cfg["training"]["maxSeqLength"]),
            "--batch-size",
            "32",
            "--compare-base",
        ],
        threads,
    )
    return split_figures(m, m.get("base"))


def train_and_score(seed: int, splits: list[str], overrides: list[str], threads: int, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cfg = trainer_config(out)
    cfg["training"]["seed"] = seed
    for item in overrides:
        key, _, value = item.partition("=")
        section, _, field = key.partition(".")
        cfg[section][field] = json.loads(value)
    m, wall = run_trainer(cfg, out / "config.json", threads)
    art = Path(cfg["output"]["dir"])
    run = {
        "seed": seed,
        "trainRecords": m["dataset"]["trainRecords"],
        "peft": {"r": m["loraR"], "alpha": m["loraAlpha"], "targetModules": m["targetModules"]},
        "training": {
            k: cfg["training"][k]
            for k in (
                "epochs",
                "learningRate",
                "lrScheduler",
                "warmupRatio",
                "batchSize",
                "weightDecay",
                "maxSeqLength",
            )
        },
        "epochs": m["epochs"],
        "steps": m["steps"],
        "trainableParameters": m["trainableParameters"],
        "adapterBytes": (art / "adapter_model.safetensors").stat().st_size,
        "artifactBytes": sum(f.stat().st_size for f in art.iterdir() if f.is_file()),
        "trainRuntimeSeconds": m["trainRuntimeSeconds"],
        "wallSeconds": round(wall, 1),
        "loadAverage1m": os.getloadavg()[0],
        "splits": {},
    }
    for split in splits:
        if split == "eval":  # the trainer's validation split: its own before/after figures
            run["splits"][split] = split_figures(m["final"], m["baseline"])
        else:
            run["splits"][split] = score_split(cfg, art, EXAMPLE / f"{split}.jsonl", threads)
    return run


def report(runs: list[dict], splits: list[str], labels: list[str]) -> dict:
    """Print the figures per split (one line per seed, the mean, the summed confusion matrix); return the means."""
    means: dict = {}
    for split in splits:
        print(f"\n== {split} ({runs[0]['splits'][split]['examples']} lines)")
        print(f"{'seed':>6} {'base acc':>9} {'accuracy':>9} {'macro-F1':>9}  " + "  ".join(f"{x:>10}" for x in labels))
        for r in runs:
            s = r["splits"][split]
            print(
                (
                    f"{r['seed']:>6} {s.get('baselineAccuracy', float('nan')):>9.1%} {s['accuracy']:>9.1%} "
                    f"{s['macroF1']:>9.1%}  "
                )
                + "  ".join(f"{s['perClassF1'][x]:>10.1%}" for x in labels)
            )
        mean = {
            "accuracy": statistics.mean(r["splits"][split]["accuracy"] for r in runs),
            "macroF1": statistics.mean(r["splits"][split]["macroF1"] for r in runs),
            "perClassF1": {
                x: round(statistics.mean(r["splits"][split]["perClassF1"][x] for r in runs), 4) for x in labels
            },
            "minAccuracy": min(r["splits"][split]["accuracy"] for r in runs),
        }
        means[split] = mean
        print(
            f"{'mean':>6} {'':>9} {mean['accuracy']:>9.1%} {mean['macroF1']:>9.1%}  "
            + "  ".join(f"{mean['perClassF1'][x]:>10.1%}" for x in labels)
        )
        cm = [
            [sum(r["splits"][split]["confusionMatrix"][i][j] for r in runs) for j in range(len(labels))]
            for i in range(len(labels))
        ]
        print(f"confusion matrix, summed over {len(runs)} seed(s) (rows: true, columns: predicted)")
        print(f"{'':>12}" + "".join(f"{x:>12}" for x in labels))
        for label, row in zip(labels, cm, strict=True):
            print(f"{label:>12}" + "".join(f"{v:>12}" for v in row))
    return means


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7], help="training seeds, one run each")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to score")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="work directory (default: a temporary one)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file (e.g. benchmarks/results/...)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=JSON",
        help="override a TrainerConfig field for an experiment, e.g. --set training.epochs=1",
    )
    a = p.parse_args(argv)
    missing = [s for s in a.splits if not (EXAMPLE / f"{s}.jsonl").is_file()]
    if missing:
        p.error(f"no {', '.join(f'{s}.jsonl' for s in missing)} in {EXAMPLE}")
    out = a.out or Path(tempfile.mkdtemp(prefix="log-intent-"))
    runs = []
    for seed in a.seeds:
        runs.append(train_and_score(seed, a.splits, a.set, a.threads, out / f"seed{seed}"))
        r = runs[-1]
        print(
            f"seed {seed}: "
            + ", ".join(f"{s} {r['splits'][s]['accuracy']:.1%}" for s in a.splits)
            + (
                f"; adapter {r['adapterBytes'] / 1e6:.2f} MB; wall {r['wallSeconds']:.0f} s "
                f"(training {r['trainRuntimeSeconds']:.0f} s)"
            ),
            flush=True,
        )
    labels = json.loads((out / f"seed{a.seeds[0]}" / "artifacts" / "label_map.json").read_text())["labels"]
    first = runs[0]
    print(
        f"\nmodel       builtin:minilm-l6, LoRA r={first['peft']['r']} alpha={first['peft']['alpha']} on "
        f"{', '.join(first['peft']['targetModules'])} + head; {first['trainableParameters']} trainable parameters"
    )
    print(
        f"training    {first['trainRecords']} lines, {first['training']}, {first['steps']} steps, {a.threads} thread(s)"
    )
    means = report(runs, a.splits, labels)
    adapter = max(r["adapterBytes"] for r in runs)
    wall = max(r["wallSeconds"] for r in runs)
    print(f"\nadapter     {adapter / 1e6:.2f} MB (all artifacts {max(r['artifactBytes'] for r in runs) / 1e6:.2f} MB)")

    def each(key: str, fmt: str) -> str:
        return ", ".join(format(r[key], fmt) for r in runs)

    print(
        f"wall time   {each('wallSeconds', '.0f')} s (training {each('trainRuntimeSeconds', '.0f')} s); "
        f"load average at the end {each('loadAverage1m', '.1f')} on {os.cpu_count()} CPUs"
    )
    checks = {
        f"mean {s} accuracy >= {TARGET_ACCURACY:.0%}": means[s]["accuracy"] >= TARGET_ACCURACY
        for s in UNSEEN_SPLITS
        if s in means
    }
    checks["adapter < 5 MB"] = adapter < TARGET_ADAPTER_BYTES
    checks[f"wall time < {TARGET_SECONDS // 60} minutes"] = wall < TARGET_SECONDS
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if a.json:
        result = {
            "model": "builtin:minilm-l6",
            "labels": labels,
            "threads": a.threads,
            "overrides": a.set,
            "cpus": os.cpu_count(),
            "torch": version("torch"),
            "means": means,
            "checks": checks,
            "runs": runs,
        }
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"artifacts in {out}")
    return 0 if all(checks.values()) else 2


if __name__ == "__main__":
    sys.exit(main())
