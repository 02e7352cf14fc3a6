#!/usr/bin/env python3
"""Benchmark: the forgetting check on SmolLM2-135M-Instruct (CPU), the seed chapter's
"domain vs general" perplexity table.

Domain: network syslog lines (the log-intent demo's lines as plain text; held-out lines from its
evaluation split). General text: English prose paragraphs from the Python standard library's
documentation (docstrings), measured through ``evaluation.generalSource``. Two LoRA SFT runs:

- ``lora``: trained on the domain lines only;
- ``lora+replay``: the same, with general paragraphs mixed into the training data (10% of the
  records; the paragraphs are disjoint from the general evaluation set) - the simplest
  forgetting mitigation.

Each run reports perplexity on (domain, general) x (before, after); the table goes to stdout and
``--json``.

    .venv/bin/python benchmarks/forgetting_smollm2.py [--steps 40] [--lr 1e-3] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

from trainer_run import run_trainer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "log-intent"
DOC_MODULES = (
    "argparse",
    "json",
    "collections",
    "subprocess",
    "logging",
    "unittest",
    "email",
    "tarfile",
    "zipfile",
    "pathlib",
    "datetime",
    "decimal",
    "fractions",
    "random",
    "statistics",
    "textwrap",
    "string",
    "heapq",
    "bisect",
    "functools",
    "itertools",
    "threading",
    "queue",
    "sched",
    "shutil",
    "tempfile",
    "csv",
    "configparser",
    "difflib",
    "calendar",
    "locale",
    "gettext",
    "doctest",
    "pdb",
    "timeit",
    "trace",
    "dataclasses",
    "enum",
    "typing",
    "contextlib",
    "abc",
    "copy",
    "pickle",
    "shelve",
    "sqlite3",
    "zlib",
    "gzip",
    "hashlib",
    "hmac",
    "secrets",
    "socket",
    "ssl",
    "selectors",
    "asyncio",
    "http.client",
    "urllib.request",
)


def general_paragraphs() -> list[str]:
    """English prose paragraphs from stdlib docstrings (no code, no tables), deduplicated."""
    seen, out = set(), []
    for name in DOC_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        objs = [mod] + [getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_")]
        for obj in objs:
            doc = (
                inspect.getdoc(obj)
                if (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isfunction(obj))
                else None
            )
            for para in re.split(r"\n\s*\n", doc or ""):
                text = " ".join(para.split())
                letters = sum(c.isalpha() or c.isspace() for c in text)
                if (
                    len(text) < 160
                    or len(text) > 700
                    or ">>>" in text
                    or "::" in text
                    or letters / len(text) < 0.9
                    or not text[0].isupper()
                    or text in seen
                ):
                    continue
                seen.add(text)
                out.append(text)
    return out


def lines(split: str) -> list[str]:
    return [json.loads(x)["text"] for x in (EXAMPLE / f"{split}.jsonl").read_text().splitlines()]


def write(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def run(work: Path, name: str, train: list[str], a) -> dict:
    d = work / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    write(d / "train.jsonl", train)
    config = {
        "method": "sft",
        "model": {"source": "builtin:smollm2-135m-instruct"},
        "dataset": {
            "source": str(d / "train.jsonl"),
            "validationSource": str(work / "domain_eval.jsonl"),
            "format": "text",
        },
        "peft": {"type": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "targetModules": ["all-linear"]},
        "training": {
            "maxSteps": a.steps,
            "batchSize": a.batch,
            "gradientAccumulationSteps": 1,
            "learningRate": a.lr,
            "warmupRatio": 0.05,
            "loggingSteps": 5,
            "maxSeqLength": 192,
            "gradientCheckpointing": False,
            "optimizer": "adamw_torch",
            "evalSteps": 100_000,
            "saveSteps": 100_000,
        },
        "evaluation": {"generalSource": str(work / "general_eval.jsonl"), "sampleGenerations": 0},
        "output": {"dir": str(d / "out")},
        "reporting": {"terminationMessagePath": str(d / "termination.json")},
    }
    m, wall = run_trainer(config, d / "config.json", a.threads)
    f = m["forgetting"]
    return {
        "trainRecords": m["dataset"]["trainRecords"],
        "steps": m["steps"],
        "wallSeconds": round(wall, 1),
        "domain": {k: round(v, 3) if isinstance(v, float) else v for k, v in f["domain"].items()},
        "general": {k: round(v, 3) if isinstance(v, float) else v for k, v in f["general"].items()},
        "verdict": f["verdict"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train", type=int, default=320, help="domain training lines")
    ap.add_argument("--heldout", type=int, default=60, help="domain and general evaluation records each")
    ap.add_argument("--replay", type=float, default=0.1, help="share of general paragraphs in the replay run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file (e.g. benchmarks/results/...)")
    a = ap.parse_args(argv)
    work = a.out or Path(tempfile.mkdtemp(prefix="forgetting-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    domain_train = rng.sample(lines("train"), a.train)
    write(work / "domain_eval.jsonl", rng.sample(lines("eval"), a.heldout))
    general = general_paragraphs()
    rng.shuffle(general)
    n_replay = round(a.train * a.replay / (1 - a.replay))
    if len(general) < a.heldout + n_replay:
        raise SystemExit(f"only {len(general)} general paragraphs found; need {a.heldout + n_replay}")
    write(work / "general_eval.jsonl", general[: a.heldout])
    replay = general[a.heldout : a.heldout + n_replay]
    mixed = domain_train + replay
    rng.shuffle(mixed)
    results = {"lora": run(work, "lora", domain_train, a), "lora+replay": run(work, "lora+replay", mixed, a)}
    out = {
        "model": "SmolLM2-135M-Instruct (LoRA r=16 all-linear, fp32 CPU)",
        "steps": a.steps,
        "batchSize": a.batch,
        "learningRate": a.lr,
        "domainEval": a.heldout,
        "generalEval": a.heldout,
        "replayRecords": n_replay,
        "generalParagraphsAvailable": len(general),
        "threads": a.threads,
        "runs": results,
    }
    base = results["lora"]
    print("perplexity (lower is better)      domain (syslog)   general (prose)")
    print(
        f"base model                         {base['domain']['perplexityBefore']:>14.2f}   "
        f"{base['general']['perplexityBefore']:>15.2f}"
    )
    for name, r in results.items():
        label = f"{name} ({r['steps']} steps)"
        print(
            f"{label:34} {r['domain']['perplexityAfter']:>14.2f}   {r['general']['perplexityAfter']:>15.2f}"
            f"   ({r['domain']['perplexityChange']:+.1%} / {r['general']['perplexityChange']:+.1%}, "
            f"{r['wallSeconds']:.0f} s)"
        )
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
