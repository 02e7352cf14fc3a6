#!/usr/bin/env python3
"""On a CUDA GPU: do the fast paths of ``training.kernels`` compute what the plain paths compute?

1. Variable-length flash attention (``kernels.flash_varlen``) against attending each sequence on
   its own with sdpa in fp64 (the CPU tests' reference), forward and gradients, bf16 inputs with
   grouped-query heads, fresh random inputs and boundaries each trial.
2. A Llama-shaped model (a few layers, bf16) with Liger's RMSNorm/RoPE/SwiGLU against the plain
   model: logits and gradients.

Prints ||out - ref|| / ||ref|| per check (bf16 lands between 1e-3 and 1e-2) and exits 1 when one
is over 2e-2 or not finite.

    python3 benchmarks/check_kernels_gpu.py
"""

from __future__ import annotations

import json
import sys

import torch

LIMIT = 2e-2


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check_varlen(trials: int = 4) -> list[dict]:
    from finetune_trainer.kernels import flash_varlen, per_sequence_attention

    kernel = flash_varlen()
    if kernel is None:
        return [{"check": "varlen", "error": "no variable-length flash kernel in this PyTorch"}]
    out = []
    for trial in range(trials):
        gen = torch.Generator().manual_seed(100 + trial)
        lens = torch.randint(1, 700, (int(torch.randint(2, 9, (1,), generator=gen)),), generator=gen)
        cu = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)]).to(torch.int32).cuda()
        total, hq, hkv, d = int(lens.sum()), 32, 8, 128
        q = torch.randn(total, hq, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(total, hkv, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(total, hkv, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn(total, hq, d, device="cuda", dtype=torch.bfloat16)
        o = kernel(q, k, v, cu, int(lens.max()), d**-0.5)
        o.backward(grad)
        got = (o.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone())
        q64, k64, v64 = (t.detach().double().requires_grad_(True) for t in (q, k, v))
        ref = per_sequence_attention(q64, k64, v64, cu, d**-0.5)
        ref.backward(grad.double())
        errs = {
            name: rel(a, b)
            for name, a, b in zip(("out", "dq", "dk", "dv"), got, (ref, q64.grad, k64.grad, v64.grad), strict=True)
        }
        out.append({"check": "varlen", "trial": trial, "sequences": len(lens), "tokens": total, **errs})
    return out


def check_liger() -> list[dict]:
    from transformers import LlamaConfig, LlamaForCausalLM

    from finetune_trainer.kernels import apply_liger

    cfg = LlamaConfig(
        hidden_size=1024,
        intermediate_size=3584,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=4096,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    plain = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    ids = torch.randint(0, 4096, (2, 512), device="cuda")
    a = plain(input_ids=ids, labels=ids)  # before Liger patches anything (its RoPE patch is module-wide)
    a.loss.backward()
    ref32 = LlamaForCausalLM(cfg).to("cuda")
    ref32.load_state_dict(plain.state_dict())
    logits32 = ref32(input_ids=ids).logits.detach()
    patched = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    patched.load_state_dict(plain.state_dict())
    if not apply_liger(patched):
        return [{"check": "liger", "error": "Liger kernels not applied (see the log)"}]
    b = patched(input_ids=ids, labels=ids)
    b.loss.backward()
    worst = max(rel(pb.grad, pa.grad) for pa, pb in zip(plain.parameters(), patched.parameters(), strict=True))
    return [
        {
            "check": "liger",
            "logits": rel(b.logits, a.logits),
            "loss": abs(b.loss.item() - a.loss.item()),
            "worstGrad": worst,
            "plainBf16VsFp32Logits": rel(a.logits, logits32),
        }
    ]


def main() -> int:
    results = []
    for check in (check_varlen, check_liger):
        try:
            results += check()
        except Exception as exc:  # report every check
            results.append({"check": check.__name__, "error": f"{type(exc).__name__}: {exc}"[:500]})
    bad = False
    for r in results:
        numbers = [v for k, v in r.items() if isinstance(v, float) and k not in ("loss", "plainBf16VsFp32Logits")]
        r["ok"] = "error" not in r and all(v == v and v < LIMIT for v in numbers)
        bad |= not r["ok"]
        print(json.dumps(r), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
