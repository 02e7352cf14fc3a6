"""Evaluation shared by every causal-LM method: token-weighted loss and perplexity, greedy samples.

perplexity = exp(sum of token losses / number of loss tokens) over the evaluation set. Adding
another evaluation set (e.g. ``evaluation.generalSource`` for the forgetting check) is one call
of :func:`evaluate_lm` on its tokenized examples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def evaluate_lm(model, examples: list[dict], pad_token_id: int, batch_size: int = 4) -> dict:
    """Mean loss per trained token and perplexity. ``examples``: dicts with input_ids and labels."""
    import torch

    if not examples:
        return {}
    was_training = model.training
    model.eval()
    device = next(p.device for p in model.parameters())
    total_loss, total_tokens = 0.0, 0
    # Longest first: fewer padded tokens per batch.
    ordered = sorted(examples, key=lambda e: -len(e["input_ids"]))
    with torch.no_grad():
        for batch in _batches(ordered, max(1, batch_size)):
            width = max(len(e["input_ids"]) for e in batch)
            ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, e in enumerate(batch):
                n = len(e["input_ids"])
                ids[i, :n] = torch.tensor(e["input_ids"])
                labels[i, :n] = torch.tensor(e["labels"])
                mask[i, :n] = 1
            n_tokens = int((labels[:, 1:] != -100).sum())
            if n_tokens == 0:
                continue
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
            total_loss += float(out.loss) * n_tokens
            total_tokens += n_tokens
    if was_training:
        model.train()
    if total_tokens == 0:
        return {}
    loss = total_loss / total_tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": total_tokens, "examples": len(examples)}


def generate(model, tokenizer, prompt_ids: list[int], max_new_tokens: int) -> str:
    """Greedy continuation of one tokenized prompt, decoded without special tokens."""
    import torch

    was_training = model.training
    model.eval()
    device = next(p.device for p in model.parameters())
    ids = torch.tensor([prompt_ids], device=device)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    if was_training:
        model.train()
    return tokenizer.decode(out[0, len(prompt_ids) :], skip_special_tokens=True).strip()
