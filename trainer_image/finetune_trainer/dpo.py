"""Direct Preference Optimization (``method: dpo``) of causal LMs with LoRA/QLoRA, through TRL's
DPOTrainer.

Records are ``{"prompt", "chosen", "rejected"}``: either strings, or the chat form (``prompt`` a
list of messages, ``chosen``/``rejected`` lists of assistant messages — or strings, taken as one
assistant message). Data without rejected answers is refused with a pointer to ``method: sft``.

The reference model is the starting point with the trained adapter out of the way: the base
model for a fresh adapter, or a frozen copy of ``model.adapter`` (e.g. an SFT adapter from an
earlier FineTuneJob) when DPO continues from one — TRL keeps that copy as the adapter ``ref``
(``ref_model=None`` with a PEFT model: no second model in memory).

Evaluation (baseline and final, and ``finetune-train evaluate`` on preference data):
- ``accuracy``: how often the model gives the chosen answer a higher log-probability than the
  rejected one (meaningful before training too);
- ``rewardAccuracy`` / ``rewardMargin``: DPO's implicit reward ``beta * (log pi - log pi_ref)``,
  how often chosen out-rewards rejected and by how much on average (both 0 before training,
  when the policy is the reference);
- ``loss``: the DPO loss (log 2 = 0.693 before training); ``perplexity``: of the chosen answers
  (the domain perplexity of the forgetting check).
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

from finetune_api.training import DatasetFormat, Method

from .errors import ConfigError, DataError
from .evaluation import evaluate_lm
from .formats import answer_text, formats_of, is_chat_preference
from .methods import EvaluateRequest, RunContext, TrainingMethod, open_adapter
from .sft import common_prefix_length

log = logging.getLogger("finetune_trainer")

# --- tokenization (as DPOTrainer does it) --------------------------------------------------------


def _ids(tokenizer, value, generation_prompt: bool = False) -> list[int]:
    if isinstance(value, list):
        out = tokenizer.apply_chat_template(
            value, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
        )
        return list(out["input_ids"])
    return list(tokenizer(text=value)["input_ids"])


def tokenize_pair(tokenizer, data: dict) -> dict:
    """{prompt_ids, chosen_ids, rejected_ids} like TRL's DPOTrainer (EOS appended to string answers)."""
    if is_chat_preference(data):
        prompt_ids = _ids(tokenizer, data["prompt"], generation_prompt=True)
        pc = _ids(tokenizer, data["prompt"] + data["chosen"])
        pr = _ids(tokenizer, data["prompt"] + data["rejected"])
    else:
        eos = tokenizer.eos_token or ""
        prompt_ids = _ids(tokenizer, data["prompt"])
        chosen = data["chosen"] if data["chosen"].endswith(eos) else data["chosen"] + eos
        rejected = data["rejected"] if data["rejected"].endswith(eos) else data["rejected"] + eos
        pc = _ids(tokenizer, data["prompt"] + chosen)
        pr = _ids(tokenizer, data["prompt"] + rejected)
    n = min(common_prefix_length(prompt_ids, pc), common_prefix_length(prompt_ids, pr))
    return {"prompt_ids": prompt_ids[:n], "chosen_ids": pc[n:], "rejected_ids": pr[n:]}


def tokenize_pairs(tokenizer, records, file: str, max_len: int, counts: dict | None = None) -> list[dict]:
    out = []
    for r in records:
        try:
            ex = tokenize_pair(tokenizer, r.data)
        except Exception as exc:  # a chat template rejecting the messages
            raise DataError.at(
                file, r.line, "prompt", f"the model's chat template rejects this record: {exc}"
            ) from None
        room = max_len - len(ex["prompt_ids"])
        if room <= 0:
            if counts is not None:
                counts["droppedPromptTooLong"] = counts.get("droppedPromptTooLong", 0) + 1
            continue
        if len(ex["chosen_ids"]) > room or len(ex["rejected_ids"]) > room:
            if counts is not None:
                counts["truncated"] = counts.get("truncated", 0) + 1
        ex["chosen_ids"], ex["rejected_ids"] = ex["chosen_ids"][:room], ex["rejected_ids"][:room]
        if not ex["chosen_ids"] or not ex["rejected_ids"]:
            continue
        out.append(ex)
    return out


# --- preference metrics --------------------------------------------------------------------------


def _sequence_logps(model, pairs: list[dict], pad_id: int) -> tuple[list[float], list[float], int]:
    """Summed log-probabilities of the chosen and rejected answers given the prompt, and the
    number of answer tokens of the chosen ones."""
    import torch

    seqs = [p["prompt_ids"] + p["chosen_ids"] for p in pairs] + [p["prompt_ids"] + p["rejected_ids"] for p in pairs]
    starts = [len(p["prompt_ids"]) for p in pairs] * 2
    width = max(len(s) for s in seqs)
    device = next(p.device for p in model.parameters())
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    answer = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (s, st) in enumerate(zip(seqs, starts, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        answer[i, st : len(s)] = True
    ids, mask, answer = ids.to(device), mask.to(device), answer.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    sums = (logp * answer[:, 1:]).sum(dim=1).tolist()
    n = len(pairs)
    return sums[:n], sums[n:], int(answer[:n, 1:].sum())


def adapter_is_identity(model) -> bool:
    """A freshly initialized LoRA adapter (every B matrix zero) leaves the model unchanged."""
    found = False
    for name, p in model.named_parameters():
        if "lora_B" in name and ".default." in name:
            found = True
            if p.detach().abs().max() > 0:
                return False
    return found


def reference_context(model, continuing: bool):
    """The reference policy: TRL's frozen ``ref`` adapter when present; else the base model (adapter
    disabled) for a fresh adapter; else (continuing from an adapter, before TRL made the copy) the
    model itself."""
    peft_config = getattr(model, "peft_config", None) or {}
    if "ref" in peft_config:
        from trl.trainer.utils import use_adapter

        return use_adapter(model, "ref")
    if continuing:
        return None
    if hasattr(model, "disable_adapter"):
        return model.disable_adapter()
    return None


def preference_metrics(
    model, pairs: list[dict], pad_id: int, beta: float, batch_size: int = 4, continuing: bool = False
) -> dict:
    import torch

    if not pairs:
        return {}
    was_training = model.training
    model.eval()
    pc, pr, pref_c, pref_r, chosen_tokens = [], [], [], [], 0
    same_as_reference = continuing and "ref" not in (getattr(model, "peft_config", None) or {})
    same_as_reference = same_as_reference or (not continuing and adapter_is_identity(model))
    with torch.no_grad():
        for i in range(0, len(pairs), max(1, batch_size)):
            batch = pairs[i : i + batch_size]
            c, r, nt = _sequence_logps(model, batch, pad_id)
            pc += c
            pr += r
            chosen_tokens += nt
            ctx = None if same_as_reference else reference_context(model, continuing)
            if ctx is None:
                pref_c += c
                pref_r += r
            else:
                with ctx:
                    rc, rr, _ = _sequence_logps(model, batch, pad_id)
                pref_c += rc
                pref_r += rr
    if was_training:
        model.train()
    n = len(pairs)
    chosen_rewards = [beta * (a - b) for a, b in zip(pc, pref_c, strict=True)]
    rejected_rewards = [beta * (a - b) for a, b in zip(pr, pref_r, strict=True)]
    margins = [a - b for a, b in zip(chosen_rewards, rejected_rewards, strict=True)]
    # -log(sigmoid(m)), computed stably
    losses = [math.log1p(math.exp(-m)) if m > -30 else -m for m in margins]
    nll = -sum(pc) / max(chosen_tokens, 1)
    return {
        "loss": sum(losses) / n,
        "accuracy": sum(1 for a, b in zip(pc, pr, strict=True) if a > b) / n,
        "rewardAccuracy": sum(1 for m in margins if m > 0) / n,
        "rewardMargin": sum(margins) / n,
        "chosenReward": sum(chosen_rewards) / n,
        "rejectedReward": sum(rejected_rewards) / n,
        "chosenLogps": sum(pc) / n,
        "rejectedLogps": sum(pr) / n,
        "perplexity": math.exp(min(nll, 700.0)),
        "beta": beta,
        "pairs": n,
        "examples": n,
    }


# --- the method ----------------------------------------------------------------------------------


class DPOMethod(TrainingMethod):
    name = Method.DPO
    formats = formats_of(Method.DPO)

    def __init__(self):
        self.continuing = False

    def check_compatible(self, ctx: RunContext) -> None:
        chat = [r for r in ctx.data.train + ctx.data.validation if is_chat_preference(r.data)]
        plain = [r for r in ctx.data.train + ctx.data.validation if not is_chat_preference(r.data)]
        if chat and plain:
            odd = plain[0] if len(plain) <= len(chat) else chat[0]
            kind = "a string prompt" if odd in plain else "a chat-message prompt"
            raise DataError.at(
                ctx.data.train_name,
                odd.line,
                "prompt",
                f"has {kind} unlike the other records; use one form (all strings or all message lists)",
            )
        if chat and not getattr(ctx.tokenizer, "chat_template", None):
            raise ConfigError(
                f"model {ctx.config.model.source} has no chat template, but {ctx.data.train_name} holds "
                "chat-message preference records; use a chat/instruct model or string prompts"
            )

    def prepare(self, ctx: RunContext) -> None:
        from datasets import Dataset

        t = ctx.config.training
        counts = ctx.data.report.extra
        train_recs, identical = [], 0
        for r in ctx.data.train:
            if answer_text(r.data["chosen"]) == answer_text(r.data["rejected"]):
                identical += 1
                continue
            train_recs.append(r)
        if identical:
            counts["identicalPairsDropped"] = identical
            log.warning("%d training pairs have identical chosen and rejected answers and were dropped", identical)
        if not train_recs:
            raise DataError(f"{ctx.data.train_name}: no pair has different chosen and rejected answers")
        self.continuing = bool(ctx.config.model.adapter)
        # TRL tokenizes the training set itself (the same way as tokenize_pair); validation is
        # tokenized here for the preference metrics, and given to TRL for its eval loss.
        ctx.train_dataset = Dataset.from_list([dict(r.data) for r in train_recs])
        val = [r for r in ctx.data.validation if answer_text(r.data["chosen"]) != answer_text(r.data["rejected"])]
        ctx.eval_dataset = Dataset.from_list([dict(r.data) for r in val]) if val else None
        ctx.eval_examples = tokenize_pairs(ctx.tokenizer, val, ctx.data.validation_name, t.max_seq_length, counts)
        tokenize_pairs(
            ctx.tokenizer, train_recs, ctx.data.train_name, t.max_seq_length, counts
        )  # counts + template errors
        if ctx.config.evaluation.general_source:
            ctx.general_examples = general_examples(
                ctx.tokenizer, ctx.config.evaluation.general_source, t.max_seq_length
            )

    def evaluate(self, ctx: RunContext, model, examples: list) -> dict:
        if examples and "labels" in examples[0]:  # general text (forgetting check)
            return evaluate_lm(
                model,
                examples,
                ctx.tokenizer.pad_token_id,
                ctx.config.training.micro_batch_size,
                ctx.config.training.kernels.chunked_loss,
            )
        return preference_metrics(
            model,
            examples,
            ctx.tokenizer.pad_token_id,
            ctx.config.training.effective_dpo_beta,
            ctx.config.training.micro_batch_size,
            self.continuing,
        )

    def evaluate_file(self, request: EvaluateRequest, beta: float = 0.1) -> dict:
        """Preference metrics of base + adapter against the base model (the adapter disabled)."""
        from .models import load_causal_lm, load_tokenizer

        _, records = request.records(DatasetFormat.PREFERENCE)
        location = request.location()
        tokenizer = load_tokenizer(location)
        pairs = tokenize_pairs(tokenizer, records, Path(request.data).name, request.max_seq_length)
        model = load_causal_lm(location, request.quantization)
        if request.adapter:
            model = open_adapter(model, request.adapter)
        result = request.summary(method="dpo", reference="base model")
        result.update(preference_metrics(model, pairs, tokenizer.pad_token_id, beta, request.batch_size))
        return result

    def build_trainer(self, ctx: RunContext, model, common_args: dict, callbacks: list):
        from trl import DPOConfig, DPOTrainer

        t = ctx.config.training
        args = DPOConfig(**common_args, beta=t.effective_dpo_beta, max_length=t.max_seq_length, dataset_num_proc=None)
        return DPOTrainer(
            model=model,
            ref_model=None,
            args=args,
            train_dataset=ctx.train_dataset,
            eval_dataset=ctx.eval_dataset,
            processing_class=ctx.tokenizer,
            callbacks=callbacks,
        )

    def samples(self, ctx: RunContext, model) -> list[dict]:
        from .evaluation import generate

        n = ctx.config.evaluation.sample_generations
        if n == 0 or not ctx.data.validation:
            return []
        out = []
        for r in ctx.data.validation[:n]:
            ids = _ids(ctx.tokenizer, r.data["prompt"], generation_prompt=True)[-ctx.config.training.max_seq_length :]
            shown = (
                r.data["prompt"]
                if isinstance(r.data["prompt"], str)
                else "\n".join(f"[{m['role']}] {m['content']}" for m in r.data["prompt"])
            )
            tuned = generate(model, ctx.tokenizer, ids, ctx.config.evaluation.max_new_tokens)
            ref = reference_context(model, self.continuing)
            with ref if ref is not None else contextlib.nullcontext():
                base = generate(model, ctx.tokenizer, ids, ctx.config.evaluation.max_new_tokens)
            out.append(
                {
                    "prompt": shown,
                    "reference": f"chosen: {answer_text(r.data['chosen'])}\n\nrejected: "
                    f"{answer_text(r.data['rejected'])}",
                    "base": base,
                    "tuned": tuned,
                }
            )
        return out

    def save(self, ctx: RunContext, model, staging: Path) -> None:
        # Only the trained adapter: not TRL's frozen "ref" copy.
        model.save_pretrained(str(staging), safe_serialization=True, selected_adapters=["default"])
        ctx.tokenizer.save_pretrained(str(staging))

    def finalize(self, ctx: RunContext, metrics: dict, staging: Path) -> list[str]:
        return report_section(
            metrics.get("baseline") or {},
            metrics.get("final") or {},
            ctx.config.model.adapter,
            ctx.config.training.effective_dpo_beta,
        )


def general_examples(tokenizer, path: str, max_len: int) -> list[dict]:
    """The forgetting check's general text ({"text"} records), tokenized for evaluate_lm."""
    from .data import read_records
    from .sft import tokenize_records

    fmt, recs = read_records(path, DatasetFormat.AUTO, {DatasetFormat.TEXT})
    return tokenize_records(tokenizer, fmt, recs, Path(path).name, False, max_len)


def _f(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if pct else f"{v:.4f}"


def report_section(base: dict, final: dict, adapter: str | None, beta: float) -> list[str]:
    if not final:
        return []
    ref = f"the starting adapter `{adapter}` (frozen copy)" if adapter else "the base model (adapter disabled)"
    rows = [
        ("preference accuracy: log p(chosen) > log p(rejected)", "accuracy", True),
        ("reward accuracy: reward(chosen) > reward(rejected)", "rewardAccuracy", True),
        ("mean reward margin", "rewardMargin", False),
        ("mean reward, chosen", "chosenReward", False),
        ("mean reward, rejected", "rejectedReward", False),
        ("DPO loss", "loss", False),
        ("perplexity of the chosen answers", "perplexity", False),
    ]
    lines = [
        "## Preference (DPO)",
        "",
        f"Reward = beta x (log pi(answer | prompt) - log pi_ref(answer | prompt)), beta = {beta}; reference: {ref}. "
        "Before training the policy is the reference, so rewards and margins are 0 and the DPO loss is log 2.",
        "",
        "| metric | before | after |",
        "| --- | --- | --- |",
    ]
    for label, key, pct in rows:
        lines.append(f"| {label} | {_f(base.get(key), pct)} | {_f(final.get(key), pct)} |")
    lines += ["", f"Pairs evaluated: {final.get('pairs')}.", ""]
    return lines
