#!/usr/bin/env python3
"""The peer of the trainer benchmarks: the short QLoRA SFT script a user would write with TRL
instead of running ``finetune-train``, at the same settings (NF4 + double quantization, bf16
compute, LoRA on q/k/v/o, paged 8-bit AdamW, non-reentrant gradient checkpointing, packing).

    python3 benchmarks/plain_trl_sft.py --model DIR --data train.jsonl --batch-size 4 --steps 16 --out result.json

``--data`` holds ``{"text": ...}`` records. ``--no-packing`` trains one document per sequence (the
long-context comparison); ``train`` is the script's body after loading, so a benchmark can run it
on a model it loaded once (``gpu_memory_plan.py``). Writes the loss and throughput of every step to
``--out``, measured as ``finetune-train`` measures its progress lines (tokens seen between two
logging steps over the time between them), and the peak GPU memory allocated during training.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback
from trl import SFTConfig, SFTTrainer


class StepTimes(TrainerCallback):
    """Instrumentation only: tokens/s between consecutive logging steps, as the trainer reports it."""

    def __init__(self):
        self.steps: list[dict] = []
        self.last: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kw):
        self.last = (time.monotonic(), state.num_input_tokens_seen or 0)

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or "loss" not in logs:
            return
        now, tokens = time.monotonic(), state.num_input_tokens_seen or 0
        t0, n0 = self.last
        self.steps.append(
            {
                "step": state.global_step,
                "loss": logs["loss"],
                "tokens": tokens - n0,
                "tokensPerSecond": (tokens - n0) / max(now - t0, 1e-9),
            }
        )
        self.last = (now, tokens)


def load(model_dir: str):
    """The model and tokenizer, loaded as the user's script loads them."""
    cuda = torch.cuda.is_available()  # (a CPU only runs the script's smoke test)
    dtype = torch.bfloat16 if cuda else torch.float32
    bnb = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=bnb, dtype=dtype, device_map={"": 0 if cuda else "cpu"}
    )
    return model, AutoTokenizer.from_pretrained(model_dir)


def train(model, tokenizer, data: str, batch_size: int, seq_length: int, steps: int, packing: bool, liger: bool):
    """The script's training (its settings are the trainer benchmarks'); returns (result, SFTTrainer)."""
    cuda = torch.cuda.is_available()
    dataset = load_dataset("json", data_files=data, split="train")
    peft_config = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    config = SFTConfig(
        output_dir="/tmp/plain-trl-sft",
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=1,
        learning_rate=2e-4,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        max_grad_norm=0.3,
        optim="paged_adamw_8bit" if cuda else "adamw_torch",
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=cuda,
        use_cpu=not cuda,
        packing=packing,
        max_length=seq_length,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=42,
        use_liger_kernel=liger,
        include_num_input_tokens_seen="all",  # the token count the trainer reports too
    )
    times = StepTimes()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[times],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    trainable, total = trainer.model.get_nb_trainable_parameters()
    result = {
        "runner": "plain-trl" + ("+liger" if liger else ""),
        "steps": times.steps,
        "peakMemoryBytes": int(torch.cuda.max_memory_allocated()) if cuda else 0,
        "peakMemoryReservedBytes": int(torch.cuda.max_memory_reserved()) if cuda else 0,
        "trainableParameters": int(trainable),
        "totalParameters": int(total),
    }
    return result, trainer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-length", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--no-packing", action="store_true", help="one document per sequence")
    ap.add_argument("--liger", action="store_true", help="use_liger_kernel=True")
    args = ap.parse_args()
    model, tokenizer = load(args.model)
    result, _ = train(
        model, tokenizer, args.data, args.batch_size, args.seq_length, args.steps, not args.no_packing, args.liger
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
