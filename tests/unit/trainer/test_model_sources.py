"""Model sources (directory, GGUF directory or file, hf://, builtin:, pvc://) and target modules."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

from finetune_api.training import ModelSpec, PeftSpec
from finetune_trainer.errors import ConfigError, ModelNotFoundError
from finetune_trainer.models import BUILTIN_MODELS, package_dir, resolve_source, resolve_target_modules
from support import trainer as helpers


def spec(source: str, **kw) -> ModelSpec:
    return ModelSpec(source=source, **kw)


def test_hf_model_directory(tiny_model):
    loc = resolve_source(spec(str(tiny_model)))
    assert (loc.path, loc.gguf_file, loc.hub) == (str(tiny_model), None, False)
    assert loc.kwargs() == {}


def test_gguf_directory_and_file(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "model.Q4_0.gguf").write_bytes(b"GGUF")
    loc = resolve_source(spec(str(one)))
    assert (loc.path, loc.gguf_file) == (str(one), "model.Q4_0.gguf")
    assert loc.kwargs() == {"gguf_file": "model.Q4_0.gguf"}
    loc = resolve_source(spec(str(one / "model.Q4_0.gguf")))  # a .gguf path works too
    assert (loc.path, loc.gguf_file) == (str(one), "model.Q4_0.gguf")

    (one / "model.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(
        ConfigError,
        match=r'several GGUF files \(model.Q4_0.gguf, model.Q8_0.gguf\); choose one with field "model.ggufFile"',
    ):
        resolve_source(spec(str(one)))
    assert resolve_source(spec(str(one), gguf_file="model.Q8_0.gguf")).gguf_file == "model.Q8_0.gguf"
    with pytest.raises(ModelNotFoundError, match=r"GGUF file 'other.gguf' not found in the directory"):
        resolve_source(spec(str(one), gguf_file="other.gguf"))


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"^model /nope/llama: no such directory$"):
        resolve_source(spec("/nope/llama"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"the directory has no model"):
        resolve_source(spec(str(tmp_path / "empty")))
    with pytest.raises(ModelNotFoundError, match=r"no such builtin model \(known: minilm-l6, smollm2-135m-instruct"):
        resolve_source(spec("builtin:gpt-17"))
    with pytest.raises(ConfigError, match=r"pvc:// location; the operator mounts it"):
        resolve_source(spec("pvc://models/llama"))


def test_hub_source_takes_revision_and_token_from_env(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    loc = resolve_source(spec("hf://HuggingFaceTB/SmolLM2-135M-Instruct", revision="main"))
    assert (loc.path, loc.hub) == ("HuggingFaceTB/SmolLM2-135M-Instruct", True)
    assert loc.kwargs() == {"revision": "main", "token": "hf_secret"}
    monkeypatch.delenv("HF_TOKEN")
    assert resolve_source(spec("hf://org/name")).kwargs() == {}


def test_builtin_models_are_installed():
    for name, builtin in BUILTIN_MODELS.items():
        pdir = package_dir(builtin.package)
        assert pdir is not None, f"{name}: package {builtin.package} is not installed"
        mdir = pdir / builtin.subdir if builtin.subdir else pdir
        assert (mdir / builtin.gguf_file).is_file() if builtin.gguf_file else (mdir / "config.json").is_file()


def test_target_modules(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    assert resolve_target_modules(model, PeftSpec()) == ["q_proj", "k_proj", "v_proj", "o_proj"]  # the default
    assert resolve_target_modules(model, PeftSpec(target_modules=["all-linear"])) == "all-linear"
    assert resolve_target_modules(model, PeftSpec(target_modules=["q_proj", "nope"])) == ["q_proj", "nope"]
    with pytest.raises(ConfigError) as e:
        resolve_target_modules(model, PeftSpec(target_modules=["query", "value"]))
    assert "none of ['query', 'value'] is a linear layer of this model" in e.value.message
    assert "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in e.value.message


def test_unknown_target_modules_exit_2(tiny_model, tmp_path, run):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("text", 12))
    r = run(helpers.make_config(tiny_model, data, tmp_path / "out", peft={"targetModules": ["query"]}), tmp_path)
    assert r.rc == 2 and r.summary["reason"] == "InvalidConfig" and "is a linear layer" in r.summary["message"]
    assert not (r.out / "_COMPLETE").exists()


@pytest.mark.slow
def test_evaluate_a_model_from_a_gguf_directory(tmp_path, capsys):
    """A directory holding only a GGUF file (the real SmolLM2 Q4_1 file, linked): tokenizer and
    weights come from the GGUF, dequantized on load."""
    builtin = BUILTIN_MODELS["smollm2-135m-instruct"]
    src = package_dir(builtin.package) / builtin.gguf_file
    gdir = tmp_path / "gguf-model"
    gdir.mkdir()
    try:
        os.symlink(src, gdir / src.name)
    except OSError:
        shutil.copy(src, gdir / src.name)
    data = helpers.write_jsonl(
        tmp_path / "heldout.jsonl",
        [{"text": "The quick brown fox jumps over the lazy dog."}, {"text": "Paris is the capital of France."}],
    )
    from finetune_trainer.cli import main

    assert main(["evaluate", "--model", str(gdir), "--data", str(data), "--max-seq-length", "64"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["format"] == "text" and res["examples"] == 2 and res["tokens"] > 10
    # A real pretrained model, not a random one: English is far from uniform over 49k tokens.
    assert 1.0 < res["perplexity"] < 1000 and math.isfinite(res["loss"])
