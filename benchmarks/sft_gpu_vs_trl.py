#!/usr/bin/env python3
"""GPU benchmark: ``finetune-train`` against a plain TRL script at identical settings, in one run.

Settings (issue 10): the Llama-3.1-8B-shaped random-weight model of ``sft_gpu_qlora.py`` and its
300 ``text_records``; QLoRA NF4 + double quantization, bf16 compute, LoRA r=16/alpha 32/dropout
0.05 on q/k/v/o, ``paged_adamw_8bit``, non-reentrant gradient checkpointing, packing to 1024
tokens, accumulation 1, 16 steps; batch 4 and batch 1.

Runners (``--runs``; each a fresh subprocess on one GPU):

* ``plain``, ``plain-liger``: ``plain_trl_sft.py`` (TRL's SFTTrainer, ``use_liger_kernel`` off/on);
* ``trainer``: ``finetune-train`` as shipped (its default ``training.kernels``);
* ``trainer-previous``: the previous trainer (fp32 upcast of the non-4-bit weights, no fast paths);
* ``trainer-memfix``: no fp32 upcast, no fast paths; ``trainer-liger``, ``trainer-varlen``: one fast
  path each; ``trainer-compile``: the default plus ``torch.compile``;
* ``trainer-2gpu``: ``finetune-train`` with two GPUs visible (two DDP processes, same per-GPU batch);
* ``trainer-off``: every fast path off (sdpa attention, no Liger, no offloading or tiled MLP, the
  evaluation's full logits): the same-seed reference of the loss check;
* ``trainer-lowmem``: activation offloading and the tiled MLP forced on at any length.

tokens/s is the median over the steps after the first two of (tokens of the step / its time),
taken from the trainer's progress lines and measured the same way in the plain script; s/step is
batch x 1024 over that; MFU is 6 x parameters x tokens/s over the GPU's dense bf16 peak (989.4
TFLOP/s for H100/H200 SXM). Peak memory: ``torch.cuda.max_memory_allocated`` during training.

    python3 benchmarks/sft_gpu_vs_trl.py --work /tmp/bench --settings 4,1 \\
        --runs plain,plain-liger,trainer-previous,trainer-memfix,trainer-liger,trainer-varlen,trainer \\
        --results benchmarks/results/sft_gpu_vs_trl_h200_2026-11-30.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sft_gpu_qlora import build_random_llama, text_records  # noqa: E402

PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12}
TRAINER_KERNELS = {
    "trainer": None,  # the shipped defaults
    "trainer-previous": {"attention": "sdpa", "liger": False},
    "trainer-memfix": {"attention": "sdpa", "liger": False},
    "trainer-liger": {"attention": "sdpa", "liger": True},
    "trainer-varlen": {"attention": "varlen", "liger": False},
    "trainer-compile": {"compile": True},
    "trainer-2gpu": None,
    "trainer-off": {"attention": "sdpa", "liger": False, "offload": "off", "tiledMlp": "off", "chunkedLoss": False},
    "trainer-lowmem": {"offload": "on", "tiledMlp": "on", "tileTokens": 1024},
}


def trainer_config(model: Path, data: Path, out: Path, batch: int, steps: int, kernels: dict | None) -> dict:
    training = {
        "maxSteps": steps,
        "batchSize": batch,
        "gradientAccumulationSteps": 1,
        "maxSeqLength": 1024,
        "packing": True,
        "gradientCheckpointing": True,
        "loggingSteps": 1,
        "learningRate": 2e-4,
        "optimizer": "paged_adamw_8bit",
        "saveSteps": 10_000,
    }
    if kernels is not None:
        training["kernels"] = kernels
    return {
        "model": {"source": str(model)},
        "dataset": {"source": str(data), "validationSplit": 0.0, "minRecords": 10},
        "peft": {
            "type": "qlora",
            "r": 16,
            "alpha": 32,
            "dropout": 0.05,
            "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        },
        "training": training,
        "evaluation": {"baseline": False, "sampleGenerations": 0},
        "output": {"dir": str(out)},
        "reporting": {"terminationMessagePath": str(out.parent / "termination.json")},
    }


def run_one(
    runner: str, batch: int, model: Path, data: Path, work: Path, steps: int, gpus: str, profile: bool, timeout: float
) -> dict:
    run_dir = work / f"{runner}-b{batch}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpus, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if profile:
        env["FINETUNE_BENCH_PROFILE"] = str(run_dir / "profile.json")
    if runner == "trainer-previous":
        env["FINETUNE_BENCH_PREVIOUS_KBIT"] = "1"
    if profile or runner == "trainer-previous":  # the instrumentation, imported at start-up
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "profile_hook"), os.environ.get("PYTHONPATH")]))
    if runner.startswith("plain"):
        cmd = [
            sys.executable,
            str(HERE / "plain_trl_sft.py"),
            "--model",
            str(model),
            "--data",
            str(data),
            "--batch-size",
            str(batch),
            "--steps",
            str(steps),
            "--out",
            str(run_dir / "result.json"),
        ]
        cmd += ["--liger"] if runner == "plain-liger" else []
    else:
        out = run_dir / "out"
        (run_dir / "config.json").write_text(
            json.dumps(trainer_config(model, data, out, batch, steps, TRAINER_KERNELS[runner]))
        )
        cmd = [sys.executable, "-m", "finetune_trainer", "--config", str(run_dir / "config.json")]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return {
            "runner": runner,
            "batch": batch,
            "error": f"timed out after {timeout:.0f} s",
            "stderrTail": (exc.stderr or b"")[-3000:].decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else str(exc.stderr)[-3000:],
        }
    wall = time.time() - t0
    (run_dir / "stderr.log").write_text(proc.stderr)
    if proc.returncode != 0:
        return {
            "runner": runner,
            "batch": batch,
            "error": f"exit code {proc.returncode}",
            "stderrTail": proc.stderr[-3000:],
        }
    if runner.startswith("plain"):
        raw = json.loads((run_dir / "result.json").read_text())
        steps_seen = [(s["step"], s["tokensPerSecond"], s["loss"]) for s in raw["steps"]]
        result = {
            "peakMemoryBytes": raw["peakMemoryBytes"],
            "peakMemoryReservedBytes": raw["peakMemoryReservedBytes"],
            "totalParameters": raw["totalParameters"],
            "kernels": None,
        }
    else:
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        steps_seen = [
            (p["step"], p["tokensPerSecond"], p["loss"])
            for p in lines
            if p.get("stage") == "training" and "tokensPerSecond" in p and "evalLoss" not in p
        ]
        m = json.loads((run_dir / "out" / "metrics.json").read_text())
        result = {
            "peakMemoryBytes": m["peakMemoryBytes"],
            "peakMemoryReservedBytes": m["peakMemoryReservedBytes"],
            "totalParameters": m["totalParameters"],
            "kernels": m.get("kernels"),
            "processes": m.get("processes"),
        }
    window = set()
    if profile and (run_dir / "profile.json").is_file():
        result["profile"] = json.loads((run_dir / "profile.json").read_text())
        window = set(range(result["profile"]["window"][0], result["profile"]["window"][1] + 1))
    steady = [tps for step, tps, _ in steps_seen if step > 2 and step not in window]
    tps = statistics.median(steady) if steady else None
    processes = result.get("processes") or 1
    result.update(
        {
            "runner": runner,
            "batch": batch,
            "gpus": gpus,
            "wallSeconds": round(wall, 1),
            "tokensPerSecond": round(tps, 1) if tps else None,
            "secondsPerStep": round(batch * 1024 * processes / tps, 3) if tps else None,
            "peakMemoryGiB": round(result["peakMemoryBytes"] / 2**30, 2),
            "losses": [round(loss, 5) for _, _, loss in steps_seen],
        }
    )
    return result


def versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("transformers", "trl", "peft", "bitsandbytes", "accelerate", "liger-kernel", "datasets", "triton"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpuCount"] = torch.cuda.device_count()
    try:
        out["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
        ).stdout.split()[0]
    except (OSError, IndexError):
        out["driver"] = None
    return out


def add_mfu(r: dict, gpu: str | None) -> None:
    peak = next((v for k, v in PEAK_BF16.items() if gpu and k in gpu), None)
    if r.get("tokensPerSecond") and peak:
        r["mfu"] = round(6 * r["totalParameters"] * r["tokensPerSecond"] / (peak * (r.get("processes") or 1)), 4)


def table(results: list[dict]) -> str:
    rows = ["| runner | batch | GPUs | s/step | tokens/s | peak allocated GiB | MFU | kernels |", "|" + " --- |" * 8]
    for r in results:
        if r.get("error"):
            rows.append(f"| {r['runner']} | {r['batch']} | {r.get('gpus')} | error: {r['error']} | | | | |")
            continue
        rows.append(
            f"| {r['runner']} | {r['batch']} | {r['gpus']} | {r['secondsPerStep']} | {r['tokensPerSecond']:,.0f} | "
            f"{r['peakMemoryGiB']} | {100 * r.get('mfu', 0):.1f}% | {r.get('kernels') or ''} |"
        )
    return "\n".join(rows)


def ratios(results: list[dict]) -> list[dict]:
    """The shipped trainer against each plain script, per batch size (and 2 GPUs against 1)."""
    out = []
    by = {(r["runner"], r["batch"]): r for r in results if not r.get("error")}
    for (runner, batch), r in by.items():
        for peer in ("plain", "plain-liger", "trainer-previous"):
            p = by.get((peer, batch))
            if runner.startswith("trainer") and runner != peer and p and r["tokensPerSecond"] and p["tokensPerSecond"]:
                out.append(
                    {
                        "runner": runner,
                        "peer": peer,
                        "batch": batch,
                        "tokensPerSecondRatio": round(r["tokensPerSecond"] / p["tokensPerSecond"], 3),
                        "peakMemoryRatio": round(r["peakMemoryBytes"] / p["peakMemoryBytes"], 3)
                        if p["peakMemoryBytes"]
                        else None,
                    }
                )
        one = by.get(("trainer", batch))
        if runner == "trainer-2gpu" and one:
            out.append(
                {
                    "runner": runner,
                    "peer": "trainer (1 GPU)",
                    "batch": batch,
                    "tokensPerSecondRatio": round(r["tokensPerSecond"] / one["tokensPerSecond"], 3),
                }
            )
    return out


def loss_check(results: list[dict], reference: str = "trainer-previous") -> list[dict]:
    """Same seed, same data: a reference run's loss curve (the previous trainer's, or every fast path
    off) against each trainer run's; ``lastLossRelativeDifference``: the loss after the last step."""
    by = {(r["runner"], r["batch"]): r for r in results if not r.get("error")}
    out = []
    for (runner, batch), r in by.items():
        base = by.get((reference, batch))
        if base and runner.startswith("trainer") and runner not in (reference, "trainer-2gpu"):
            # the steps both runs logged (a run may stop short of the other)
            pairs = list(zip(base["losses"], r["losses"], strict=False))
            if pairs:
                out.append(
                    {
                        "runner": runner,
                        "reference": reference,
                        "batch": batch,
                        "steps": len(pairs),
                        "lastLossRelativeDifference": round(abs(pairs[-1][1] / pairs[-1][0] - 1), 5),
                        "maxAbsLossDifference": round(max(abs(a - b) for a, b in pairs), 5),
                        "meanLossPrevious": round(statistics.mean(a for a, _ in pairs), 5),
                        "meanLoss": round(statistics.mean(b for _, b in pairs), 5),
                    }
                )
    return out


def runs_of(item: str, batches: list[int]) -> list[tuple[str, int]]:
    runner, _, batch = item.partition("@")
    return [(runner, int(batch))] if batch else [(runner, b) for b in batches]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/sft-vs-trl")
    ap.add_argument("--shape", default="llama8b")
    ap.add_argument("--model", help="an existing model directory instead of the random-weight shape")
    ap.add_argument("--settings", default="4,1", help="batch sizes")
    ap.add_argument(
        "--runs",
        default="plain,trainer",
        help="runners (each at every --settings batch, or one batch as runner@batch); queues of runs "
        "on their own GPUs, run side by side, are separated by ';'",
    )
    ap.add_argument("--queue-gpus", default="0;1", help="the CUDA_VISIBLE_DEVICES of each queue")
    ap.add_argument("--profile", default="", help="runners whose steps 5-6 are profiled (excluded from the median)")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=420)
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds from start after which no run is started")
    ap.add_argument("--results", help="write the raw figures here (JSON)")
    args = ap.parse_args()
    started = time.time()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else work / f"{args.shape}-random"
    if not args.model:
        build_random_llama(args.shape, model)
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in text_records(300)))
    profiled = set(filter(None, args.profile.split(",")))
    batches = [int(b) for b in args.settings.split(",")]
    queues = [[item for r in q.split(",") if r for item in runs_of(r, batches)] for q in args.runs.split(";")]
    queue_gpus = args.queue_gpus.split(";")
    info = versions()
    results: list[dict] = []
    out_path = Path(args.results) if args.results else work / "results.json"

    def save() -> None:
        for r in results:
            add_mfu(r, info.get("gpu"))
        out_path.write_text(
            json.dumps(
                {
                    "versions": info,
                    "settings": {
                        "model": str(model),
                        "shape": args.shape,
                        "steps": args.steps,
                        "seqLength": 1024,
                        "records": 300,
                    },
                    "results": results,
                    "ratios": ratios(results),
                    "lossCheck": loss_check(results) + loss_check(results, "trainer-off"),
                },
                indent=2,
            )
        )

    def drain(queue: list, gpus: str) -> None:
        for runner, batch in queue:
            if time.time() - started > args.deadline:
                results.append({"runner": runner, "batch": batch, "gpus": gpus, "error": "skipped: past the deadline"})
                continue
            gpu_set = "0,1" if runner == "trainer-2gpu" else gpus
            r = run_one(runner, batch, model, data, work, args.steps, gpu_set, runner in profiled, args.timeout)
            results.append(r)
            save()
            print(json.dumps({k: v for k, v in r.items() if k not in ("losses", "profile")}), flush=True)

    with concurrent.futures.ThreadPoolExecutor(len(queues)) as pool:
        for f in [pool.submit(drain, q, queue_gpus[i % len(queue_gpus)]) for i, q in enumerate(queues)]:
            f.result()
    save()
    results.sort(key=lambda r: (r["batch"], r["runner"]))
    print(json.dumps(info))
    print(table(results))
    for r in ratios(results):
        print(json.dumps(r))
    for r in loss_check(results) + loss_check(results, "trainer-off"):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
