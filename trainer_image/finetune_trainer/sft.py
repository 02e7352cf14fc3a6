"""Supervised fine-tuning (``method: sft``) of causal LMs on chat, alpaca, prompt/completion,
sharegpt and text records, through TRL's SFTTrainer.

Records are tokenized here, not by TRL: chat data goes through the tokenizer's own
``apply_chat_template`` and the loss mask covers every assistant turn (found by rendering the
conversation prefix by prefix), which works with any template (no ``{% generation %}`` markers
needed); errors name the record's file and line; the same tokenization feeds training, the
baseline/final evaluation and ``finetune-train evaluate``. SFTTrainer receives ``input_ids`` and
``labels`` (-100 outside the trained tokens) and does packing, padding and the training loop.
"""

from __future__ import annotations

import logging
from pathlib import Path

from finetune_api.training import DatasetFormat, Method

from .data import Record
from .errors import ConfigError, DataError
from .evaluation import evaluate_lm, generate
from .formats import formats_of
from .methods import EvaluateRequest, RunContext, TrainingMethod, evaluate_with_adapter

log = logging.getLogger("finetune_trainer")

CHAT_FORMATS = {DatasetFormat.CHAT, DatasetFormat.SHAREGPT}
ALPACA_PROMPT = (
    "Below is an instruction that describes a task{ctx}. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n{input}### Response:\n"
)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def to_example(fmt: DatasetFormat, data: dict, chat: bool) -> dict:
    """A record in the canonical form: {"messages"}, {"prompt", "completion"} or {"text"}."""
    if fmt in CHAT_FORMATS:
        return {"messages": data["messages"]}
    if fmt is DatasetFormat.ALPACA:
        if chat:
            content = data["instruction"] + (f"\n\n{data['input']}" if data["input"] else "")
            return {
                "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": data["output"]}]
            }
        prompt = ALPACA_PROMPT.format(
            ctx=", paired with an input that provides further context" if data["input"] else "",
            instruction=data["instruction"],
            input=f"### Input:\n{data['input']}\n\n" if data["input"] else "",
        )
        return {"prompt": prompt, "completion": data["output"]}
    if fmt is DatasetFormat.PROMPT_COMPLETION:
        return {"prompt": data["prompt"], "completion": data["completion"]}
    if fmt is DatasetFormat.TEXT:
        return {"text": data["text"]}
    raise ValueError(f"sft cannot use format {fmt}")


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading token ids ``a`` and ``b`` share (where a rendered prompt ends inside a rendered answer)."""
    n = 0
    for x, y in zip(a, b, strict=False):  # the shorter one bounds the prefix
        if x != y:
            break
        n += 1
    return n


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_example(tokenizer, example: dict, completion_only: bool) -> tuple[list[int], list[int]]:
    """(input_ids, mask) where mask is 1 on tokens that carry loss."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if "messages" in example:
        msgs = example["messages"]
        ids = _ids(tokenizer, _render(tokenizer, msgs), False)
        if not completion_only:
            return ids, [1] * len(ids)
        mask = [0] * len(ids)
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            start = common_prefix_length(_ids(tokenizer, _render(tokenizer, msgs[:i], True), False), ids)
            end = common_prefix_length(_ids(tokenizer, _render(tokenizer, msgs[: i + 1]), False), ids)
            for j in range(start, end):
                mask[j] = 1
        return ids, mask
    if "prompt" in example:
        prompt_ids = _ids(tokenizer, example["prompt"], True)
        ids = _ids(tokenizer, example["prompt"] + example["completion"], True) + eos
        start = common_prefix_length(prompt_ids, ids) if completion_only else 0
        return ids, [0] * start + [1] * (len(ids) - start)
    ids = _ids(tokenizer, example["text"], True) + eos
    return ids, [1] * len(ids)


def prompt_for_sample(tokenizer, example: dict) -> tuple[list[int], str, str] | None:
    """(prompt ids, prompt text, reference) for a side-by-side generation."""
    if "messages" in example:
        msgs = example["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        text = _render(tokenizer, msgs[:last], True)
        shown = "\n".join(f"[{m['role']}] {m['content']}" for m in msgs[:last])
        return _ids(tokenizer, text, False), shown, msgs[last]["content"]
    if "prompt" in example:
        return _ids(tokenizer, example["prompt"], True), example["prompt"], example["completion"]
    ids = _ids(tokenizer, example["text"], True)
    if len(ids) < 4:
        return None
    cut = max(1, len(ids) // 3)
    return (
        ids[:cut],
        tokenizer.decode(ids[:cut], skip_special_tokens=True),
        tokenizer.decode(ids[cut:], skip_special_tokens=True),
    )


def tokenize_records(
    tokenizer,
    fmt: DatasetFormat,
    records: list[Record],
    file: str,
    completion_only: bool,
    max_len: int,
    counts: dict | None = None,
) -> list[dict]:
    """Tokenized {input_ids, labels} per record, truncated to ``max_len``; template errors name the line."""
    chat = has_chat_template(tokenizer)
    out = []
    for r in records:
        example = to_example(fmt, r.data, chat)
        try:
            ids, mask = tokenize_example(tokenizer, example, completion_only)
        except Exception as exc:  # jinja2 TemplateError from apply_chat_template, typically
            field = (
                "messages"
                if fmt is DatasetFormat.CHAT
                else ("conversations" if fmt is DatasetFormat.SHAREGPT else None)
            )
            raise DataError.at(file, r.line, field, f"the model's chat template rejects this record: {exc}") from None
        if len(ids) > max_len:
            ids, mask = ids[:max_len], mask[:max_len]
            if counts is not None:
                counts["truncated"] = counts.get("truncated", 0) + 1
        if not any(mask[1:]):
            if counts is not None:
                counts["droppedNoTrainedTokens"] = counts.get("droppedNoTrainedTokens", 0) + 1
            continue
        out.append({"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask, strict=True)]})
    return out


def check_chat_template(tokenizer, fmt: DatasetFormat, model_source: str, data_name: str) -> None:
    """Chat records are rendered with the tokenizer's chat template: refuse a model without one."""
    if fmt in CHAT_FORMATS and not has_chat_template(tokenizer):
        raise ConfigError(
            f"model {model_source} has no chat template, but {data_name} is {fmt.value} data that is rendered "
            "with one; use a model with a chat template (an instruct/chat model) or prompt-completion/text data"
        )


class SFTMethod(TrainingMethod):
    name = Method.SFT
    formats = formats_of(Method.SFT)

    def check_compatible(self, ctx: RunContext) -> None:
        check_chat_template(ctx.tokenizer, ctx.data.format, ctx.config.model.source, ctx.data.train_name)

    def prepare(self, ctx: RunContext) -> None:
        from datasets import Dataset

        t = ctx.config.training
        counts = ctx.data.report.extra
        train = tokenize_records(
            ctx.tokenizer,
            ctx.data.format,
            ctx.data.train,
            ctx.data.train_name,
            t.completion_only_loss,
            t.max_seq_length,
            counts,
        )
        val = tokenize_records(
            ctx.tokenizer,
            ctx.data.format,
            ctx.data.validation,
            ctx.data.validation_name,
            t.completion_only_loss,
            t.max_seq_length,
            counts,
        )
        if not train:
            raise DataError(
                f"{ctx.data.train_name}: no record has trained tokens left after truncation to "
                f"maxSeqLength={t.max_seq_length}"
            )
        counts["trainTokens"] = sum(len(e["input_ids"]) for e in train)
        counts["trainLossTokens"] = sum(sum(1 for x in e["labels"] if x != -100) for e in train)
        ctx.train_dataset = Dataset.from_list(train)
        ctx.eval_dataset = Dataset.from_list(val) if val else None
        ctx.eval_examples = val
        if ctx.config.evaluation.general_source:
            from .data import read_records

            gfmt, grecs = read_records(ctx.config.evaluation.general_source, DatasetFormat.AUTO, self.formats)
            ctx.general_examples = tokenize_records(
                ctx.tokenizer, gfmt, grecs, Path(ctx.config.evaluation.general_source).name, False, t.max_seq_length
            )

    def evaluate(self, ctx: RunContext, model, examples: list) -> dict:
        return evaluate_lm(
            model,
            examples,
            ctx.tokenizer.pad_token_id,
            ctx.config.training.micro_batch_size,
            ctx.config.training.kernels.chunked_loss,
        )

    def evaluate_file(self, request: EvaluateRequest) -> dict:
        """Loss and perplexity per trained token, tokenized as for training."""
        from .models import load_causal_lm, load_tokenizer

        fmt, records = request.records(request.format, set(self.formats))
        location = request.location()
        tokenizer = load_tokenizer(location)
        name = Path(request.data).name
        check_chat_template(tokenizer, fmt, request.model, name)
        examples = tokenize_records(tokenizer, fmt, records, name, True, request.max_seq_length)
        model = load_causal_lm(location, request.quantization)
        result = request.summary(format=fmt.value)
        result.update(
            evaluate_with_adapter(
                model, request, lambda m: evaluate_lm(m, examples, tokenizer.pad_token_id, request.batch_size)
            )
        )
        return result

    def build_trainer(self, ctx: RunContext, model, common_args: dict, callbacks: list):
        from trl import SFTConfig, SFTTrainer

        t = ctx.config.training
        args = SFTConfig(
            **common_args,
            max_length=t.max_seq_length,
            packing=t.packing,
            dataset_num_proc=None,
        )
        return SFTTrainer(
            model=model,
            args=args,
            train_dataset=ctx.train_dataset,
            eval_dataset=ctx.eval_dataset,
            processing_class=ctx.tokenizer,
            callbacks=callbacks,
        )

    def samples(self, ctx: RunContext, model) -> list[dict]:
        n = ctx.config.evaluation.sample_generations
        if n == 0 or not ctx.data.validation:
            return []
        chat = has_chat_template(ctx.tokenizer)
        out = []
        for r in ctx.data.validation[:n]:
            p = prompt_for_sample(ctx.tokenizer, to_example(ctx.data.format, r.data, chat))
            if p is None:
                continue
            ids, shown, ref = p
            ids = ids[-ctx.config.training.max_seq_length :]
            tuned = generate(model, ctx.tokenizer, ids, ctx.config.evaluation.max_new_tokens)
            with model.disable_adapter():
                base = generate(model, ctx.tokenizer, ids, ctx.config.evaluation.max_new_tokens)
            out.append({"prompt": shown, "reference": ref, "base": base, "tuned": tuned})
        return out
