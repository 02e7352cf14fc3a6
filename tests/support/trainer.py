"""Tiny models, tokenizers and datasets for the trainer tests (built in seconds, no downloads)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import subprocess
import sys
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
    stderr: str = ""

    @property
    def progress(self) -> list[dict]:
        """The TrainingProgress lines of stdout."""
        return [d for d in self._lines() if "plan" not in d and "serving" not in d]

    @property
    def serving(self) -> dict:
        """The serving facts the trainer reported (``{"serving": {...}}`` on stdout, status.serving in a
        cluster); empty when it reported none."""
        reported = [d["serving"] for d in self._lines() if "serving" in d]
        return reported[-1] if reported else {}

    @property
    def plans(self) -> list[dict]:
        """The memory plan lines of stdout (``{"plan": {...}}``): as planned, then with the measured peak."""
        return [d["plan"] for d in self._lines() if "plan" in d]

    def _lines(self) -> list[dict]:
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


# Imported by every Python process that has the hooks directory on its path (``sitecustomize``);
# only the training process whose RANK is CRASH_RANK patches the trainer, so that it fails right
# after optimizer step CRASH_STEP: it raises, or with CRASH_KILLS_NODE it SIGKILLs its node
# (the launcher and torch.distributed.run, its parents' process group, then itself), as when a
# pod is killed.
TRAINER_HOOK = """
import os
if os.environ.get("RANK") is not None and os.environ.get("RANK") == os.environ.get("CRASH_RANK"):
    import signal
    from transformers import TrainerCallback
    import finetune_trainer.sft as sft

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == int(os.environ["CRASH_STEP"]):
                if os.environ.get("CRASH_KILLS_NODE"):
                    os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("simulated failure of one worker")

    build = sft.SFTMethod.build_trainer
    sft.SFTMethod.build_trainer = lambda self, ctx, model, a, cbs: build(self, ctx, model, a, cbs + [Crash()])
"""


def trainer_env(tmp: Path, **env: str) -> dict[str, str]:
    """The environment of a ``python -m finetune_trainer`` subprocess: one thread, the hook above."""
    hooks = tmp / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(TRAINER_HOOK)
    path = os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])])
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, **env)


@dataclass
class Pod:
    """``python -m finetune_trainer`` started as a pod runs it: in its own process group (so that
    killing the group is killing the pod), with its own termination-message path."""

    popen: subprocess.Popen
    logs: Path
    termination: Path
    out: Path

    @classmethod
    def start(cls, cfg: dict, tmp: Path, name: str, env: dict[str, str]) -> Pod:
        termination = tmp / f"{name}.termination"
        termination.unlink(missing_ok=True)
        config = {**cfg, "reporting": {**cfg.get("reporting", {}), "terminationMessagePath": str(termination)}}
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(config))
        logs = tmp / name
        with open(f"{logs}.stdout", "w") as out, open(f"{logs}.stderr", "w") as err:
            popen = subprocess.Popen(
                [sys.executable, "-m", "finetune_trainer", "--config", str(path)],
                env=env,
                stdout=out,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        return cls(popen, logs, termination, Path(cfg["output"]["dir"]))

    def wait(self, timeout: float = 600) -> Run:
        rc = self.popen.wait(timeout=timeout)
        summary = json.loads(self.termination.read_text()) if self.termination.is_file() else {}
        return Run(
            rc, Path(f"{self.logs}.stdout").read_text(), summary, self.out, Path(f"{self.logs}.stderr").read_text()
        )


# --- classification: a tiny BERT and labelled lines ---------------------------------------------

LABELS = ["alpha", "beta", "gamma"]
# Each label has its own words: a tiny model learns them in a few steps.
VOCAB = {
    "alpha": "disk cpu memory error",
    "beta": "network timeout latency node",
    "gamma": "user hello answer question",
}


def label_rows(n: int, seed: int = 0, labels=LABELS) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = VOCAB.get(label, "red green blue").split()
        out.append({"text": " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) + f" {i}", "label": label})
    return out


def build_tiny_bert(path: Path) -> Path:
    """A 2-layer, hidden-32 BERT with a WordPiece tokenizer trained on the test vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus() + [r["text"] for r in label_rows(60)], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(path))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=fast.pad_token_id,
    )
    BertModel(cfg).save_pretrained(str(path), safe_serialization=True)  # no head: it is new, as with a real encoder
    return path
