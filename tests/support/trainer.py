"""Tiny models, tokenizers and datasets for the trainer tests (built in seconds, no downloads)."""

from __future__ import annotations

import contextlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = (
    "error warning info disk cpu memory network timeout service node pod restart failed ok latency high low "
    "user assistant system hello world the a of to in is what how why answer question translate summary json "
    "level host code status red green blue one two three four five six seven eight nine ten"
).split()


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) for _ in range(n)]


def build_tokenizer(path: Path, chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus() + ['{"level": "error", "host": "node-1"}'] * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
    )
    if chat_template:
        fast.chat_template = CHATML
    fast.save_pretrained(str(path))
    return fast


def build_tiny_llama(path: Path, chat_template: bool = True, hidden: int = 32) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(path, chat_template)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(str(path), safe_serialization=True)
    return path


def qa_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        out.append((f"what is {a} plus {b} ({i})", f"the answer is {a + b}"))
    return out


def records(fmt: str, n: int = 24, seed: int = 0) -> list[dict]:
    pairs = qa_pairs(n, seed)
    if fmt == "chat":
        return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in pairs]
    if fmt == "sharegpt":
        return [
            {
                "conversations": [
                    {"from": "system", "value": "be brief"},
                    {"from": "human", "value": q},
                    {"from": "gpt", "value": a},
                ]
            }
            for q, a in pairs
        ]
    if fmt == "alpaca":
        return [{"instruction": q, "input": "" if i % 2 else "numbers", "output": a} for i, (q, a) in enumerate(pairs)]
    if fmt == "prompt-completion":
        return [{"prompt": q + " =", "completion": " " + a} for q, a in pairs]
    if fmt == "text":
        return [{"text": f"{q}? {a}."} for q, a in pairs]
    raise ValueError(fmt)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_config(model: Path | str, data: Path, out: Path, **over) -> dict:
    """A small, fast TrainerConfig (wire form) for tests; ``over`` merges section dicts."""
    cfg = {
        "model": {"source": str(model)},
        "dataset": {"source": str(data), "validationSplit": 0.2},
        "peft": {"r": 4, "alpha": 8, "dropout": 0.0, "targetModules": ["auto"]},
        "training": {
            "maxSteps": 4,
            "batchSize": 2,
            "gradientAccumulationSteps": 1,
            "learningRate": 5e-3,
            "loggingSteps": 1,
            "maxSeqLength": 64,
            "gradientCheckpointing": False,
            "warmupRatio": 0.0,
        },
        "evaluation": {"sampleGenerations": 1, "maxNewTokens": 4},
        "output": {"dir": str(out)},
        "reporting": {"terminationMessagePath": str(out.parent / f"{out.name}.termination")},
    }
    for section, values in over.items():
        if isinstance(values, dict) and isinstance(cfg.get(section), dict):
            cfg[section] = {**cfg[section], **values}
        else:
            cfg[section] = values
    return cfg


@dataclass
class Run:
    rc: int
    stdout: str
    summary: dict
    out: Path

    @property
    def progress(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


def run_cli(config: dict, tmp: Path, name: str = "config.json") -> Run:
    """Write ``config``, run ``finetune-train --config`` in this process, return rc/stdout/summary."""
    from finetune_trainer.cli import main

    path = tmp / name
    path.write_text(json.dumps(config))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["--config", str(path)])
    term = Path(config["reporting"]["terminationMessagePath"])
    summary = json.loads(term.read_text()) if term.is_file() else {}
    return Run(rc, buf.getvalue(), summary, Path(config["output"]["dir"]))


@contextlib.contextmanager
def crash_at_step(method_cls, step: int, message: str):
    """Inside the block, ``method_cls``'s trainer raises ``RuntimeError(message)`` right after
    optimizer step ``step``, as a preempted pod would die mid-run."""
    import pytest
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == step:
                raise RuntimeError(message)

    original = method_cls.build_trainer
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            method_cls, "build_trainer", lambda self, ctx, model, a, cbs: original(self, ctx, model, a, cbs + [Crash()])
        )
        yield
