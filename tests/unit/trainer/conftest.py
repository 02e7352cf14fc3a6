"""Fixtures for the trainer tests: tiny random Llama models with a real BPE tokenizer and a
ChatML chat template, and ``run`` (``support.trainer.run_cli``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import trainer as helpers

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 Llama with a 400-token BPE tokenizer and a ChatML template."""
    return helpers.build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory) -> Path:
    return helpers.build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-base", chat_template=False)


@pytest.fixture
def run():
    return helpers.run_cli


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (two threads on a busy 2-core machine mostly wait)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return helpers.build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")
