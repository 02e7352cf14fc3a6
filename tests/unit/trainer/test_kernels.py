"""The fast paths of ``training.kernels`` compute what the plain path computes (on a CPU, the
variable-length attention runs its per-example reference; the GPU kernels are compared with it
by ``benchmarks/check_kernels_gpu.py``), and a 4-bit base keeps its other weights in their dtype."""

from __future__ import annotations

import itertools
import json

import pytest

from finetune_api.training import KernelsSpec, QuantizationSpec, TrainerConfig
from support import trainer as helpers


@pytest.fixture(scope="module")
def packed_batch():
    """Four examples of 5, 9, 3 and 7 tokens in one padding-free row, as TRL collates packing."""
    import torch

    torch.manual_seed(1)
    lens = [5, 9, 3, 7]
    ids = torch.randint(4, 300, (1, sum(lens)))
    cu = torch.tensor([0, 5, 14, 17, 24], dtype=torch.int32)
    positions = torch.cat([torch.arange(n) for n in lens])[None]
    return ids, positions, cu


def test_varlen_attention_is_each_example_attended_alone(tiny_model, packed_batch):
    import torch
    from transformers import AutoModelForCausalLM

    from finetune_trainer.kernels import VARLEN, attention_implementation

    ids, positions, cu = packed_batch
    assert attention_implementation(KernelsSpec(attention="varlen")) == VARLEN
    varlen = AutoModelForCausalLM.from_pretrained(str(tiny_model), attn_implementation=VARLEN)
    sdpa = AutoModelForCausalLM.from_pretrained(str(tiny_model), attn_implementation="sdpa")
    alone = torch.cat(
        [sdpa(input_ids=ids[:, a:b], use_cache=False).logits for a, b in itertools.pairwise(cu.tolist())], dim=1
    )
    out = varlen(
        input_ids=ids,
        position_ids=positions,
        labels=ids,
        use_cache=False,
        cu_seq_lens_q=cu,
        cu_seq_lens_k=cu,
        max_length_q=9,
        max_length_k=9,
    )
    masked = sdpa(input_ids=ids, position_ids=positions, labels=ids, use_cache=False)  # block-diagonal mask
    assert (out.logits - alone).abs().max() < 1e-5
    assert out.loss.item() == pytest.approx(masked.loss.item(), rel=1e-5)
    out.loss.backward()
    masked.loss.backward()
    for (name, a), (_, b) in zip(varlen.named_parameters(), sdpa.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    # Without example boundaries (evaluation, generation) it is sdpa itself.
    assert torch.equal(varlen(input_ids=ids).logits, sdpa(input_ids=ids).logits)


def test_training_with_varlen_attention_matches_sdpa(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("prompt-completion", 30))
    losses, kernels = {}, {}
    for attention in ("auto", "varlen"):
        cfg = helpers.make_config(
            tiny_model,
            data,
            tmp_path / attention,
            training={"maxSteps": 3, "packing": True, "kernels": {"attention": attention}},
            evaluation={"sampleGenerations": 0, "baseline": False},
        )
        r = helpers.run_cli(cfg, tmp_path, f"{attention}.json")
        assert r.rc == 0, r.summary
        m = json.loads((r.out / "metrics.json").read_text())
        losses[attention] = [x["loss"] for x in m["trainLosses"]]
        kernels[attention] = m["kernels"]
    assert kernels["auto"] == {"attention": "sdpa", "liger": False, "compile": False}  # no CUDA: plain paths
    assert kernels["varlen"]["attention"] == "finetune_varlen"
    assert losses["varlen"] == pytest.approx(losses["auto"], rel=1e-4) and len(losses["auto"]) == 3


def test_4bit_base_keeps_its_other_weights_in_the_compute_dtype(tiny_model):
    """peft's prepare_model_for_kbit_training cast embeddings, LM head and norms to fp32 (2 GiB more
    on an 8B Llama, and an fp32 residual stream); they stay bf16 now, the LoRA matrices fp32."""
    import torch

    from finetune_api.training import PeftSpec
    from finetune_trainer.models import ModelLocation, load_causal_lm, wrap_peft

    base = load_causal_lm(ModelLocation(str(tiny_model), str(tiny_model)), QuantizationSpec(compute_dtype="bfloat16"))
    model, _ = wrap_peft(base, PeftSpec(type="qlora", r=4, alpha=8), "CAUSAL_LM")
    dtypes = {n: p.dtype for n, p in model.named_parameters() if type(p).__name__ != "Params4bit"}
    assert dtypes["base_model.model.model.embed_tokens.weight"] == torch.bfloat16
    assert dtypes["base_model.model.model.norm.weight"] == torch.bfloat16
    lora = {n: d for n, d in dtypes.items() if "lora_" in n}
    assert lora and set(lora.values()) == {torch.float32}
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_kernel_settings_do_not_block_resuming(tmp_path):
    from finetune_trainer.pipeline import training_fingerprint

    def config(**training):
        return TrainerConfig.model_validate(
            {
                "model": {"source": "/m"},
                "dataset": {"source": "/d.jsonl"},
                "output": {"dir": "/o"},
                "training": training,
            }
        )

    plain = training_fingerprint(config())
    assert training_fingerprint(config(kernels={"attention": "sdpa", "liger": False, "compile": True})) == plain
    assert training_fingerprint(config(learningRate=1e-3)) != plain
