#!/usr/bin/env python3
"""GPU: which ingredient makes Liger's kernels crash together with the varlen attention kernel
(``SystemError: ... apply of FunctionMeta object ... returned NULL without setting an exception``,
then SIGSEGV/SIGABRT, seen 2026-11-30 on torch 2.11). Each variant trains three steps of a small
random Llama (LoRA, packed padding-free batch) in its own process and reports its exit code.

    python3 benchmarks/liger_varlen_gpu.py --out liger.json      # every variant, four at a time
    python3 benchmarks/liger_varlen_gpu.py --variant varlen-liger  # one, in this process
    python3 benchmarks/liger_varlen_gpu.py --trainer --work /tmp/lv --out liger-trainer.json

``--trainer``: ``finetune-train`` itself (SmolLM2-135M-shaped random model, 4-bit, packing, varlen
attention and Liger), with and without the CUDA memory-history recording that the benchmarks'
profile hook turns on for two steps (``benchmarks/profile_hook``; PyTorch 2.11 regression
pytorch/pytorch#179536 names memory-history recording with non-reentrant checkpointing).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# name: (attention, liger kernels, checkpointing, varlen through the aten op instead of varlen_attn)
VARIANTS = {
    "varlen-liger": ("varlen", ("rope", "rms_norm", "swiglu"), "non-reentrant", False),
    "varlen-liger-nockpt": ("varlen", ("rope", "rms_norm", "swiglu"), "off", False),
    "varlen-liger-reentrant": ("varlen", ("rope", "rms_norm", "swiglu"), "reentrant", False),
    "varlen-aten-liger": ("varlen", ("rope", "rms_norm", "swiglu"), "non-reentrant", True),
    "varlen-liger-rope": ("varlen", ("rope",), "non-reentrant", False),
    "varlen-liger-rmsnorm": ("varlen", ("rms_norm",), "non-reentrant", False),
    "varlen-liger-swiglu": ("varlen", ("swiglu",), "non-reentrant", False),
    "sdpa-liger": ("sdpa", ("rope", "rms_norm", "swiglu"), "non-reentrant", False),
    "varlen": ("varlen", (), "non-reentrant", False),
}


def run_variant(name: str) -> None:
    attention, liger, ckpt, aten = VARIANTS[name]
    if aten:
        sys.modules["torch.nn.attention.varlen"] = None  # type: ignore[assignment]  # flash_varlen's fallback
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from finetune_api.training import KernelsSpec, PeftSpec
    from finetune_trainer.kernels import attention_implementation
    from finetune_trainer.models import wrap_peft

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=32000,
    )
    impl = attention_implementation(KernelsSpec(attention=attention))
    with torch.device("cuda"):
        model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16, attn_implementation=impl)
    if liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(
            model=model,
            cross_entropy=False,
            fused_linear_cross_entropy=False,
            **{k: k in liger for k in ("rope", "rms_norm", "swiglu")},
        )
    model, _ = wrap_peft(model, PeftSpec(r=8, alpha=16, dropout=0.05), "CAUSAL_LM")
    if ckpt != "off":
        model.gradient_checkpointing_enable({"use_reentrant": ckpt == "reentrant"})
        model.enable_input_require_grads()
    lens = [300, 700, 24]
    ids = torch.randint(0, 32000, (1, sum(lens)), device="cuda")
    cu = torch.tensor([0, 300, 1000, 1024], dtype=torch.int32, device="cuda")
    pos = torch.cat([torch.arange(n) for n in lens])[None].cuda()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(
                input_ids=ids,
                position_ids=pos,
                labels=ids,
                use_cache=False,
                cu_seq_lens_q=cu,
                cu_seq_lens_k=cu,
                max_length_q=700,
                max_length_k=700,
            )
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    torch.cuda.synchronize()
    print(json.dumps({"variant": name, "loss": out.loss.item()}))


TRAINER_VARIANTS = {
    "trainer-varlen-liger": (True, False),
    "trainer-varlen-liger-memory-history": (True, True),
    "trainer-varlen-memory-history": (False, True),
}


def run_trainers(work: Path) -> list[dict]:
    from sft_gpu_qlora import build_random_llama, text_records

    model = work / "smollm2-135m-random"
    build_random_llama("smollm2-135m", model)
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in text_records(300)))
    results = []
    for name, (liger, history) in TRAINER_VARIANTS.items():
        out = work / name
        config = {
            "model": {"source": str(model)},
            "dataset": {"source": str(data), "validationSplit": 0.0},
            "peft": {"type": "qlora", "dropout": 0.05},
            "training": {
                "maxSteps": 5,
                "batchSize": 4,
                "gradientAccumulationSteps": 1,
                "packing": True,
                "loggingSteps": 1,
                "saveSteps": 1000,
                "kernels": {"liger": liger},
            },
            "evaluation": {"baseline": False, "sampleGenerations": 0},
            "output": {"dir": str(out)},
            "reporting": {"terminationMessagePath": str(work / f"{name}.termination")},
        }
        (work / f"{name}.json").write_text(json.dumps(config))
        env = dict(os.environ)
        if history:
            env |= {"FINETUNE_BENCH_PROFILE": str(work / f"{name}.profile.json"), "FINETUNE_BENCH_PROFILE_STEPS": "2,3"}
            env["PYTHONPATH"] = os.pathsep.join([str(HERE / "profile_hook"), env.get("PYTHONPATH", "")])
        proc = subprocess.run(
            [sys.executable, "-m", "finetune_trainer", "--config", str(work / f"{name}.json")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        kernels = json.loads((out / "metrics.json").read_text())["kernels"] if proc.returncode == 0 else None
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-4:]
        results.append(
            {
                "variant": name,
                "liger": liger,
                "memoryHistory": history,
                "exitCode": proc.returncode,
                "kernels": kernels,
                "stderrTail": tail if proc.returncode else [],
            }
        )
        print(json.dumps({k: results[-1][k] for k in ("variant", "exitCode", "kernels")}), flush=True)
    return results


def spawn(name: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--variant", name], capture_output=True, text=True, timeout=300)
    tail = [line for line in proc.stderr.splitlines() if line.strip()][-4:]
    return {"variant": name, "settings": VARIANTS[name], "exitCode": proc.returncode, "stderrTail": tail}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=sorted(VARIANTS))
    ap.add_argument("--trainer", action="store_true", help="finetune-train with and without memory history")
    ap.add_argument("--work", default="/tmp/liger-varlen")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.variant:
        run_variant(args.variant)
        return 0
    if args.trainer:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        results = run_trainers(Path(args.work))
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))
        return 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(spawn, VARIANTS))
    for r in results:
        print(json.dumps({k: r[k] for k in ("variant", "exitCode")}), r["stderrTail"][-1:] if r["exitCode"] else "")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
