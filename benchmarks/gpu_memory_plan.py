#!/usr/bin/env python3
"""GPU benchmark: the trainer's memory plan against ``torch.cuda.max_memory_allocated`` (issue 22),
and peak memory against sequence length, the trainer beside the plain TRL script (issue 21).

Every run is a real training run of a few steps in this one process: each model (the random
weight shapes of ``sft_gpu_qlora.py``) is loaded once, 4-bit, by the trainer's own loader, and
lent in turn to ``finetune_trainer.pipeline.train`` (the whole trainer: planning, data, PEFT,
fast paths, TRL's SFTTrainer) and to ``plain_trl_sft.train`` (the plain script's body); after
each run its adapter comes off (``unload``) and the next run starts from the bare base model.

    python3 benchmarks/gpu_memory_plan.py --work /dev/shm/plan --matrix --long plain:16384,trainer:16384 \\
        --results benchmarks/results/gpu_memory_plan_h100.json

``--matrix`` runs ``MATRIX``; ``--long`` runs ``runner:tokens[:steps[:shape]]`` items at batch 1, one
document per sequence (QLoRA r16 q/k/v/o, dropout 0.05, gradient checkpointing; runner ``plain``,
``trainer`` with its ``auto`` fast paths, or ``trainer-offload`` with offloading forced on). A run
that runs out of memory is recorded as such. ``--shape tiny`` runs
the same code on a CPU in seconds (a dry run: nothing is measured there).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sft_gpu_qlora import SHAPES, WORDS, build_random_llama, text_records  # noqa: E402
from sft_gpu_vs_trl import versions  # noqa: E402

GIB = 1 << 30
# (name, shape, r, targets, batch, seq, checkpointing, packing, kernels): the committed matrix.
MATRIX = [
    ("8b-b4-1k-packed", "llama8b", 16, ["auto"], 4, 1024, True, True, {}),
    ("8b-b1-1k-packed", "llama8b", 16, ["auto"], 1, 1024, True, True, {}),
    ("8b-b8-2k-packed-r8", "llama8b", 8, ["auto"], 8, 2048, True, True, {}),
    ("8b-b2-4k-packed-r64-all", "llama8b", 64, ["all-linear"], 2, 4096, True, True, {}),
    ("8b-b1-16k", "llama8b", 16, ["auto"], 1, 16384, True, False, {}),
    ("8b-b1-32k-r32", "llama8b", 32, ["auto"], 1, 32768, True, False, {}),
    ("8b-b1-32k-offload", "llama8b", 16, ["auto"], 1, 32768, True, False, {"offload": "on"}),
    ("8b-b2-8k-padded", "llama8b", 16, ["auto"], 2, 8192, True, False, {}),
    ("8b-b1-2k-nockpt", "llama8b", 16, ["auto"], 1, 2048, False, True, {}),
    ("8b-b4-1k-offload-tiled", "llama8b", 16, ["auto"], 4, 1024, True, True, {"offload": "on", "tiledMlp": "on"}),
    ("small-b8-1k-packed", "smollm2-135m", 16, ["auto"], 8, 1024, True, True, {}),
    ("small-b4-4k-r64-all-nockpt", "smollm2-135m", 64, ["all-linear"], 4, 4096, False, False, {}),
    ("small-b1-32k-r8", "smollm2-135m", 8, ["auto"], 1, 32768, True, False, {}),
    ("small-b8-2k-padded", "smollm2-135m", 16, ["auto"], 8, 2048, True, False, {}),
]


def documents(n: int, tokens: int, padded: bool, seed: int = 0) -> list[dict]:
    """``n`` text records of at least ``tokens`` words (so at least ``tokens`` tokens: each is
    truncated to one full sequence); ``padded``: lengths between half and one and a half sequences,
    so that batches carry padding."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = int(tokens * rng.uniform(0.5, 1.5)) if padded else tokens + 16
        out.append({"text": " ".join(rng.choice(WORDS) for _ in range(words))})
    return out


class ModelCache:
    """One model directory loaded at a time (4-bit, by the trainer's loader), lent to one run at a time."""

    def __init__(self, load):
        self.load = load
        self.path: str | None = None
        self.model = None

    def get(self, path: str, attention: str):
        from transformers import AutoModelForCausalLM

        from finetune_api.training import QuantizationSpec
        from finetune_trainer import models

        if path != self.path:
            self.model = None  # the previous model's weights must not count in this one's peak
            free_memory()
            loc = models.ModelLocation(path, path)
            self.model = self.load(AutoModelForCausalLM, loc, QuantizationSpec(), attn_implementation="sdpa")
            self.path = path
        self.model.set_attn_implementation(attention)
        return self.model

    def release(self) -> None:
        """Back to the bare base model: the LoRA layers, the tiled MLPs and TRL's fused LM head come off
        (also after a run that failed half-way)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        from finetune_trainer.tiling import untile_mlps

        model = self.model
        if model is None:
            return
        for name, module in list(model.named_modules()):
            if isinstance(module, BaseTunerLayer) and hasattr(module, "base_layer"):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, module.get_base_layer())
        untile_mlps(model)
        model.gradient_checkpointing_disable()  # a run without checkpointing must not inherit it
        for attr in ("forward", "_finetune_fused_lm_head", "peft_config", "_hf_peft_config_loaded"):
            if attr in vars(model):
                delattr(model, attr)


@contextlib.contextmanager
def lent_to_trainer(cache: ModelCache):
    """The trainer's loader returns the cached model."""
    from finetune_trainer import models

    load = models.load_model

    def cached(auto_cls, loc, quantization=None, **kwargs):
        return cache.get(loc.path, kwargs.get("attn_implementation") or "sdpa")

    models.load_model = cached
    try:
        yield
    finally:
        models.load_model = load


def trainer_config(model: Path, data: Path, out: Path, case: dict) -> dict:
    training = {
        "maxSteps": case["steps"],
        "batchSize": case["batch"],
        "gradientAccumulationSteps": 1,
        "maxSeqLength": case["seq"],
        "packing": case["packing"],
        "gradientCheckpointing": case["checkpointing"],
        "loggingSteps": 1,
        "saveSteps": 10_000,
        "optimizer": "paged_adamw_8bit",
        "kernels": case["kernels"],
    }
    return {
        "model": {"source": str(model)},
        "dataset": {"source": str(data), "validationSplit": 0.0, "minRecords": 1},
        "peft": {
            "type": "qlora",
            "r": case["r"],
            "alpha": 2 * case["r"],
            "dropout": 0.05,
            "targetModules": case["targets"],
        },
        "training": training,
        "evaluation": {"baseline": False, "sampleGenerations": 0},
        "output": {"dir": str(out)},
        "reporting": {"terminationMessagePath": str(out.parent / f"{out.name}.termination")},
    }


def free_memory() -> int:
    import torch

    gc.collect()
    if not torch.cuda.is_available():
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return int(torch.cuda.memory_allocated())


def run_trainer(cache: ModelCache, model: Path, work: Path, case: dict) -> dict:
    from finetune_trainer import pipeline
    from finetune_trainer.config import parse_config
    from finetune_trainer.errors import TrainerError

    run = work / case["name"]
    run.mkdir(parents=True, exist_ok=True)
    data = run / "train.jsonl"
    if case["packing"]:
        records = text_records(2000)
    else:
        records = documents(case["steps"] * case["batch"] + 2, case["seq"], padded=case["batch"] > 1)
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = parse_config(trainer_config(model, data, run / "out", case))
    cache.get(str(model), "sdpa")
    before, started = free_memory(), time.time()
    result: dict = {"allocatedBeforeBytes": before}
    try:
        with lent_to_trainer(cache):
            pipeline.train(config)
        metrics = json.loads((run / "out" / "metrics.json").read_text())
        result |= {
            "peakMemoryBytes": metrics["peakMemoryBytes"],
            "plan": metrics["memoryPlan"],
            "kernels": metrics["kernels"],
            "tokensPerSecond": metrics["tokensPerSecond"],
            "losses": [x["loss"] for x in metrics["trainLosses"]],
        }
    except TrainerError as exc:  # InsufficientGPUMemory: the plan said no
        result |= {"error": exc.reason.value, "message": exc.message}
    except Exception as exc:  # noqa: BLE001 - a GPU out-of-memory is a finding, not a crash
        result |= {"error": type(exc).__name__, "message": str(exc).splitlines()[0][:500] if str(exc) else ""}
        traceback.print_exc()
    finally:
        cache.release()
    result["wallSeconds"] = round(time.time() - started, 1)
    return result


def run_plain(cache: ModelCache, model: Path, work: Path, case: dict) -> dict:
    import plain_trl_sft

    run = work / case["name"]
    run.mkdir(parents=True, exist_ok=True)
    data = run / "train.jsonl"
    docs = documents(case["steps"] * case["batch"] + 2, case["seq"], padded=False)
    data.write_text("".join(json.dumps(r) + "\n" for r in docs))
    base = cache.get(str(model), "sdpa")
    tokenizer = plain_trl_sft.AutoTokenizer.from_pretrained(str(model))
    before, started = free_memory(), time.time()
    result: dict = {"allocatedBeforeBytes": before}
    try:
        raw, _ = plain_trl_sft.train(
            base, tokenizer, str(data), case["batch"], case["seq"], case["steps"], False, False
        )
        result |= {"peakMemoryBytes": raw["peakMemoryBytes"], "losses": [s["loss"] for s in raw["steps"]]}
    except Exception as exc:  # noqa: BLE001 - a GPU out-of-memory is a finding, not a crash
        result |= {"error": type(exc).__name__, "message": str(exc).splitlines()[0][:500] if str(exc) else ""}
    finally:
        cache.release()
    result["wallSeconds"] = round(time.time() - started, 1)
    return result


def summarize(case: dict, result: dict) -> dict:
    out = {k: v for k, v in case.items() if k != "kernels"} | {"kernelsRequested": case["kernels"]} | result
    if "peakMemoryBytes" in result:
        out["peakMemoryGiB"] = round(result["peakMemoryBytes"] / GIB, 3)
    plan = result.get("plan")
    if plan and result.get("peakMemoryBytes"):
        out["predictedGiB"] = round(plan["predictedPeakBytes"] / GIB, 3)
        out["errorPercent"] = round(100 * (plan["predictedPeakBytes"] / result["peakMemoryBytes"] - 1), 2)
    return out


def recorded(results: dict) -> list[dict]:
    """The trainer's measured runs of a results file, less those marked superseded."""
    return [
        r
        for r in results["results"]
        if r["runner"] == "trainer" and r.get("peakMemoryBytes") and "supersededBecause" not in r
    ]


def replan(row: dict) -> int:
    """The peak the memory model predicts now for a recorded run: the trainer's own planning of the
    same config, for the same GPU (``plan.gpuMemoryBytes``); a CPU suffices."""
    from finetune_trainer import planning
    from finetune_trainer.config import validate_config

    case = row | {"kernels": row["kernelsRequested"]}
    path = Path("/models") / row["shape"]
    config = validate_config(trainer_config(path, Path("/data/train.jsonl"), Path("/out"), case))
    target = planning.Target(row["plan"]["gpuMemoryBytes"], "recorded", True, None)
    model = {"model_type": "llama"} | SHAPES[row["shape"]]
    return planning.plan_run(config, model, target).estimate.peak


def print_replanned(path: str) -> int:
    """``--replan``: each recorded run's measured peak, the prediction recorded then, and the
    prediction of the memory model now."""
    rows = recorded(json.loads(Path(path).read_text()))
    print(f"{'case':34} {'measured':>9} {'recorded':>9} {'error':>8} {'now':>9} {'error':>8}")
    for r in rows:
        measured, now = r["peakMemoryBytes"], replan(r)
        was = r["plan"]["predictedPeakBytes"]
        print(
            f"{r['name']:34} {measured / GIB:9.2f} {was / GIB:9.2f} {100 * (was / measured - 1):+7.1f}% "
            f"{now / GIB:9.2f} {100 * (now / measured - 1):+7.1f}%"
        )
    return 0


def cases(args) -> list[dict]:
    """The 8B matrix, the ``--long`` items, then the other shapes' cases (each model loads once)."""
    tiny = args.shape == "tiny"
    out = []
    for name, shape, r, targets, batch, seq, ckpt, packing, kernels in MATRIX if args.matrix else []:
        if args.only and name not in args.only.split(","):
            continue
        out.append(
            dict(
                runner="trainer",
                name=name,
                shape=args.shape or shape,
                r=r,
                targets=targets,
                batch=batch,
                seq=min(seq, 512) if tiny else seq,
                checkpointing=ckpt,
                packing=packing,
                kernels=kernels,
                steps=args.steps,
            )
        )
    for item in filter(None, (args.long or "").split(",")):
        runner, tokens, *rest = item.split(":")
        steps, shape = (rest + [None, None])[:2]
        shape = args.shape or shape or "llama8b"
        out.append(
            dict(
                runner=runner,
                name=f"long-{runner}-{tokens}-{shape}",
                shape=shape,
                r=16,
                targets=["auto"],
                batch=1,
                seq=int(tokens),
                checkpointing=True,
                packing=False,
                kernels={"offload": "on"} if runner == "trainer-offload" else {},
                steps=int(steps) if steps else args.steps,
            )
        )
    order = list(dict.fromkeys(c["shape"] for c in out))
    return sorted(out, key=lambda c: order.index(c["shape"]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/gpu-memory-plan")
    ap.add_argument("--matrix", action="store_true")
    ap.add_argument("--only", help="these matrix cases only (comma-separated names)")
    ap.add_argument("--long", help="runner:tokens[:steps],... (runner: plain or trainer)")
    ap.add_argument("--shape", help="run every case on this shape (tiny: a CPU dry run)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds after which no case is started")
    ap.add_argument("--results", help="where to write the results")
    ap.add_argument("--replan", metavar="RESULTS", help="recompute the predictions of a results file (no GPU)")
    args = ap.parse_args()
    if args.replan:
        return print_replanned(args.replan)
    if not args.results:
        ap.error("--results is required")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    from finetune_trainer import models
    from finetune_trainer.cli import setup_logging

    setup_logging()
    work, started = Path(args.work), time.time()
    cache, results = ModelCache(models.load_model), []
    info = versions()
    for case in cases(args):
        if time.time() - started > args.deadline:
            results.append(summarize(case, {"error": "skipped: past the deadline"}))
            continue
        model = work / f"{case['shape']}-random"
        build_random_llama(case["shape"], model)
        run = run_plain if case["runner"] == "plain" else run_trainer
        results.append(summarize(case, run(cache, model, work, case)))
        line = {k: results[-1].get(k) for k in ("name", "peakMemoryGiB", "predictedGiB", "errorPercent", "error")}
        print(json.dumps(line), flush=True)
        Path(args.results).write_text(json.dumps({"versions": info, "results": results}, indent=2))
    errors = [r["errorPercent"] for r in results if "errorPercent" in r]
    if errors:
        print(f"plan vs measured: {len(errors)} runs, worst {max(errors, key=abs):+.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
