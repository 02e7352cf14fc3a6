"""Evaluation shared by every causal-LM method: token-weighted loss and perplexity, greedy samples.

perplexity = exp(sum of token losses / number of loss tokens) over the evaluation set. Adding
another evaluation set (e.g. ``evaluation.generalSource`` for the forgetting check) is one call
of :func:`evaluate_lm` on its tokenized examples.

The loss goes through TRL's chunked LM head (``training.kernels.chunkedLoss``, on by default): a
model's own forward with ``labels`` builds the logits of every token (vocabulary x tokens, in bf16
and again in fp32 for the loss: 47 GiB for 65536 tokens of Llama 3's 128256-entry vocabulary),
which is what ran the trainer out of memory at long sequences while training itself fitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def fused_lm_head(model) -> None:
    """Give the causal LM under ``model`` (a PEFT wrapper or the model) TRL's chunked LM head, once:
    ``model(..., labels=..., fused_lm_head=True)`` then returns per-token log-probabilities."""
    from trl.trainer.utils import add_fused_lm_head

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "_finetune_fused_lm_head", False):
        add_fused_lm_head(base)
        base._finetune_fused_lm_head = True


def loss_sum(model, ids, mask, labels, chunked: bool) -> float:
    """Summed next-token loss over the positions whose label is not -100."""
    if chunked:
        out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, use_cache=False)
        return -float(out.log_probs.float().sum())
    out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
    return float(out.loss) * int((labels[:, 1:] != -100).sum())


def evaluate_lm(model, examples: list[dict], pad_token_id: int, batch_size: int = 4, chunked: bool = True) -> dict:
    """Mean loss per trained token and perplexity. ``examples``: dicts with input_ids and labels;
    ``chunked``: through the chunked LM head, without the whole logits."""
    import torch

    if not examples:
        return {}
    was_training = model.training
    model.eval()
    if chunked:
        fused_lm_head(model)
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
            total_loss += loss_sum(model, ids.to(device), mask.to(device), labels.to(device), chunked)
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
