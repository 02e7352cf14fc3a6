#!/usr/bin/env python3
"""GPU check of the memory fast paths against the plain computation, on a small random Llama in
bf16 with LoRA on every linear layer and gradient checkpointing (what the CPU tests check in
fp32): the tiled MLP and activation offloading (pinned host memory, side stream) give the loss
and gradients of the plain path, and the chunked evaluation loss the full-logits loss. Errors
are relative norms against an fp32 run of the same model; offloading must match bf16 bit for
bit. Also the peak memory of one 8192-token step with each. On a machine without CUDA it runs
on the CPU (a dry run of the script: offloading then copies host to host).

    python3 benchmarks/check_memory_paths_gpu.py --out check.json
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch

from finetune_api.training import PeftSpec


def model_and_batch(dtype, tokens: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    from finetune_trainer.models import wrap_peft

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=32000,
        max_position_embeddings=tokens,
    )
    with torch.device(DEVICE):
        base = LlamaForCausalLM(cfg).to(dtype)
    model, _ = wrap_peft(base, PeftSpec(r=8, alpha=16, dropout=0.0, target_modules=["all-linear"]), "CAUSAL_LM")
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    model.gradient_checkpointing_enable({"use_reentrant": False})
    model.enable_input_require_grads()
    ids = torch.randint(0, 32000, (1, tokens), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    return model, ids


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CUDA = DEVICE == "cuda"


def step(model, ids, hooks=None):
    model.zero_grad(set_to_none=True)
    if CUDA:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with hooks if hooks is not None else contextlib.nullcontext():
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
    if CUDA:
        torch.cuda.synchronize()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.float().item(), grads, torch.cuda.max_memory_allocated() if CUDA else 0


def rel(a: dict, b: dict) -> float:
    num = sum((a[k] - b[k]).norm() ** 2 for k in b) ** 0.5
    return float(num / sum(v.norm() ** 2 for v in b.values()) ** 0.5)


def main() -> int:
    from finetune_trainer import offload
    from finetune_trainer.evaluation import evaluate_lm
    from finetune_trainer.tiling import tile_mlps, untile_mlps

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--out")
    args = ap.parse_args()
    ref_model, ids = model_and_batch(torch.float32, args.tokens)
    ref_loss, ref, _ = step(ref_model, ids)
    del ref_model
    model, _ = model_and_batch(torch.bfloat16, args.tokens)
    out: dict = {"tokens": args.tokens, "gpu": torch.cuda.get_device_name(0) if CUDA else "cpu"}
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        plain_loss, plain, out["plainPeakBytes"] = step(model, ids)
        again_loss, again, _ = step(model, ids)
        hooks = offload.ActivationOffload(model, DEVICE)
        off_loss, off, out["offloadPeakBytes"] = step(model, ids, hooks)
        out["offloadedBytes"] = hooks.offloaded_bytes
        tile_mlps(model, 1024)
        tiled_loss, tiled, out["tiledPeakBytes"] = step(model, ids)
        untile_mlps(model)
    out["plainVsFp32"] = {"loss": abs(plain_loss / ref_loss - 1), "grads": rel(plain, ref)}
    out["tiledVsFp32"] = {"loss": abs(tiled_loss / ref_loss - 1), "grads": rel(tiled, ref)}
    out["plainRepeatBitExact"] = again_loss == plain_loss and all(torch.equal(again[k], plain[k]) for k in plain)
    out["plainRepeatVsPlain"] = {"loss": abs(again_loss / plain_loss - 1), "grads": rel(again, plain)}
    out["offloadVsPlainBitExact"] = off_loss == plain_loss and all(torch.equal(off[k], plain[k]) for k in plain)
    out["offloadVsPlain"] = {"loss": abs(off_loss / plain_loss - 1), "grads": rel(off, plain)}
    examples = [{"input_ids": ids[0, :n].tolist(), "labels": ids[0, :n].tolist()} for n in (2048, 1500, 700)]
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        full = evaluate_lm(model, examples, 0, batch_size=2, chunked=False)
        chunked = evaluate_lm(model, examples, 0, batch_size=2, chunked=True)
    out["chunkedEvalVsFull"] = abs(chunked["loss"] / full["loss"] - 1)
    print(json.dumps(out, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
