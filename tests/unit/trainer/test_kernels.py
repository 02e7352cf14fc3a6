"""The fast paths of ``training.kernels`` compute what the plain path computes (on a CPU, the
variable-length attention runs its per-example reference; the GPU kernels are compared with it
by ``benchmarks/check_kernels_gpu.py``): varlen attention, the tiled MLP, activation offloading
(host to host here: the same bookkeeping), the chunked evaluation loss; and a 4-bit base keeps
its other weights in their dtype."""

from __future__ import annotations

import itertools
import json

import pytest

from finetune_api.training import KernelsSpec, PeftSpec, QuantizationSpec, TrainerConfig
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
    plain = {"attention": "sdpa", "liger": False, "compile": False, "tiledMlp": False, "offload": False}
    assert kernels["auto"] == plain  # no CUDA: plain paths
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


def lora_model(tiny_model, targets, dropout=0.0):
    import torch
    from transformers import AutoModelForCausalLM

    from finetune_trainer.models import wrap_peft

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    model, _ = wrap_peft(base, PeftSpec(r=4, alpha=8, dropout=dropout, target_modules=targets), "CAUSAL_LM")
    for name, p in model.named_parameters():
        if "lora_B" in name:  # a trained adapter, not the zero start, so every gradient is non-trivial
            torch.nn.init.normal_(p, std=0.02)
    model.gradient_checkpointing_enable({"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    return model


def loss_and_grads(model, ids, seed=0):
    import torch

    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_tiled_mlp_computes_the_plain_mlp(tiny_model):
    """LoRA on every linear layer (the MLP's too), under gradient checkpointing: the same loss and
    gradients, the tiles 7 tokens long over a 40-token sequence (the last one short)."""
    import torch

    from finetune_trainer.tiling import tile_mlps, untile_mlps

    ids = torch.randint(4, 300, (1, 40), generator=torch.Generator().manual_seed(0))
    model = lora_model(tiny_model, ["all-linear"])
    plain_loss, plain = loss_and_grads(model, ids)
    assert tile_mlps(model, 7) == 2 and tile_mlps(model, 7) == 0  # each layer's MLP, once
    tiled_loss, tiled = loss_and_grads(model, ids)
    assert tiled_loss == pytest.approx(plain_loss, rel=1e-6)
    assert plain.keys() == tiled.keys() and any("mlp" in n for n in plain)
    for name, g in plain.items():
        assert torch.allclose(tiled[name], g, rtol=1e-4, atol=1e-7), name
    assert untile_mlps(model) == 2 and loss_and_grads(model, ids)[0] == plain_loss


def test_tiled_mlp_recomputes_with_the_dropout_masks_of_its_forward(tiny_model):
    """With dropout in the MLP's LoRA branches the backward's recomputation draws the same masks as
    the forward did: the gradients are those of the tiles computed with autograd all the way."""
    import torch

    from finetune_trainer.tiling import TiledMLP

    model = lora_model(tiny_model, ["all-linear"], dropout=0.3)
    mlp = model.base_model.model.model.layers[0].mlp
    params = tuple(p for p in mlp.parameters() if p.requires_grad)
    x = torch.randn(1, 23, 32, requires_grad=True)
    grads = []
    for tiled in (True, False):
        torch.manual_seed(5)
        out = TiledMLP.apply(x, mlp.forward, 8, *params) if tiled else torch.cat([mlp(p) for p in x.split(8, 1)], 1)
        grads.append(torch.autograd.grad(out.square().sum(), [x, *params]))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_offloading_returns_every_saved_tensor_bit_for_bit(tiny_model):
    """Host to host on a CPU (the GPU run copies device to pinned host memory on a side stream):
    the checkpointed layer inputs go out and come back, gradients unchanged to the bit."""
    import torch

    from finetune_trainer import offload

    ids = torch.randint(4, 300, (2, 48), generator=torch.Generator().manual_seed(1))
    model = lora_model(tiny_model, ["auto"])
    plain_loss, plain = loss_and_grads(model, ids)
    hooks = offload.ActivationOffload(model, device_type="cpu", min_bytes=1024)
    with hooks:
        loss, grads = loss_and_grads(model, ids)
    layer_input = 2 * 48 * 32 * 4  # batch x tokens x hidden, fp32
    assert sum(1 for r in hooks.saved if r.shape == (2, 48, 32)) >= 2  # both layers' inputs
    assert hooks.offloaded_bytes >= 2 * layer_input
    assert all(r.device_copy is None for r in hooks.saved)  # nothing left on the device
    assert loss == plain_loss
    for name, g in plain.items():
        assert torch.equal(grads[name], g), name


def test_offloading_leaves_the_tiled_mlp_s_backward_alone(tiny_model):
    """The tiled MLP recomputes its tiles inside the backward pass: what they save is not offloaded
    (it would go out and straight back), and nothing fetched stays on the device afterwards (a
    consumed tensor is never prefetched again: on the GPU that kept every tile, 62 GiB at 32k tokens)."""
    import torch

    from finetune_trainer import offload
    from finetune_trainer.tiling import tile_mlps

    ids = torch.randint(4, 300, (1, 64), generator=torch.Generator().manual_seed(2))
    model = lora_model(tiny_model, ["all-linear"])
    plain_loss, plain = loss_and_grads(model, ids)
    tile_mlps(model, 16)
    hooks = offload.ActivationOffload(model, device_type="cpu", min_bytes=1024)
    with hooks:
        loss, grads = loss_and_grads(model, ids)
    assert {tuple(r.shape) for r in hooks.saved} >= {(1, 64, 32)}  # the layer inputs went out
    assert not any(r.shape[-2:] == (16, 64) for r in hooks.saved)  # no tile of the MLP's intermediates
    assert all(r.consumed and r.device_copy is None for r in hooks.saved if r.shape == (1, 64, 32))
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    for name, g in plain.items():
        assert torch.allclose(grads[name], g, rtol=1e-4, atol=1e-7), name


def test_chunked_evaluation_loss_never_builds_the_logits(tiny_model):
    from transformers import AutoModelForCausalLM

    from finetune_trainer.evaluation import evaluate_lm

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    examples = [{"input_ids": list(range(5, 5 + n)), "labels": [-100] * 3 + list(range(8, 5 + n))} for n in (9, 17, 30)]
    head_calls = []
    handle = model.lm_head.register_forward_hook(lambda m, i, o: head_calls.append(o.shape))
    full = evaluate_lm(model, examples, 0, batch_size=2, chunked=False)
    assert head_calls  # the model's own forward: the whole logits
    head_calls.clear()
    chunked = evaluate_lm(model, examples, 0, batch_size=2, chunked=True)
    handle.remove()
    assert head_calls == []
    assert chunked["tokens"] == full["tokens"] == (9 - 3) + (17 - 3) + (30 - 3)
    assert chunked["loss"] == pytest.approx(full["loss"], rel=1e-5)


def test_training_with_the_tiled_mlp_matches_the_plain_run(tiny_model, tmp_path):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("text", 40))
    losses = {}
    for name, kernels in (("plain", {"tiledMlp": "off"}), ("tiled", {"tiledMlp": "on", "tileTokens": 64})):
        cfg = helpers.make_config(
            tiny_model,
            data,
            tmp_path / name,
            peft={"targetModules": ["all-linear"]},
            training={
                "maxSteps": 3,
                "packing": True,
                "maxSeqLength": 128,
                "gradientCheckpointing": True,
                "kernels": kernels,
            },
            evaluation={"sampleGenerations": 0},
        )
        r = helpers.run_cli(cfg, tmp_path, f"{name}.json")
        assert r.rc == 0, r.summary
        m = json.loads((r.out / "metrics.json").read_text())
        losses[name] = [x["loss"] for x in m["trainLosses"]] + [m["final"]["loss"]]
        assert m["kernels"]["tiledMlp"] is (name == "tiled")
    assert losses["tiled"] == pytest.approx(losses["plain"], rel=1e-5)
