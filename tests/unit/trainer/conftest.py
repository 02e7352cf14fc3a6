"""Fixtures for the trainer tests: tiny random Llama models with a real BPE tokenizer and a
ChatML chat template, and a helper that runs ``finetune-train`` in-process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import helpers  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 Llama with a 400-token BPE tokenizer and a ChatML template."""
    return helpers.build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory) -> Path:
    return helpers.build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-base", chat_template=False)


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


@pytest.fixture
def run():
    return run_cli
