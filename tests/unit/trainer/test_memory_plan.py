"""The memory plan: its terms against a real model where a CPU can count them exactly (weights,
4-bit blocks, LoRA parameters), against the GPU measurements of issue 21 where it cannot, and the
``planning`` stage: InsufficientGPUMemory before any weight loads, ``batchSize: auto``, the
``finetune-train plan`` dry run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from finetune_api.protocol import ExitCode, MemoryPlan
from finetune_api.training import PeftSpec, QuantizationSpec, TrainerConfig
from finetune_trainer import memplan, planning
from finetune_trainer.memplan import GIB, Setup, Shape, estimate
from support import trainer as helpers

LLAMA_8B_CONFIG = {  # Llama 3.1 8B's config.json, the parts the plan reads
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}
LLAMA_8B = Shape.from_config(LLAMA_8B_CONFIG)
# Peak allocated GiB measured on one H100 (issue 21): the plain TRL script, batch 1, one document a
# sequence, QLoRA r16 q/k/v/o, dropout 0.05, gradient checkpointing; and packed 4 x 1024 / 1 x 1024.
MEASURED_PLAIN = {(1, 16384): 13.75, (1, 32768): 22.07, (1, 65536): 38.72, (1, 98304): 55.37, (1, 131072): 72.02}
MEASURED_PACKED = {(4, 1024): 7.60, (1, 1024): 6.04}
BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
MATRIX_RESULTS = BENCHMARKS / "results" / "gpu_memory_plan_h100_2026-12-06.json"


def tiny_config(tiny_model) -> dict:
    return json.loads((tiny_model / "config.json").read_text())


def test_4bit_weights_are_counted_to_the_byte(tiny_model):
    from finetune_trainer.models import ModelLocation, load_causal_lm

    model = load_causal_lm(ModelLocation("t", str(tiny_model)), QuantizationSpec(compute_dtype="bfloat16"))
    quantized = 0
    for module in model.modules():
        if type(module).__name__ == "Linear4bit":
            state = module.weight.quant_state
            nested = [state.state2.absmax, state.state2.code, state.offset] if state.nested else []
            quantized += sum(t.numel() * t.element_size() for t in [module.weight, state.absmax, state.code, *nested])
    other = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if type(p).__name__ != "Params4bit")
    shape = Shape.from_config(tiny_config(tiny_model))
    terms = memplan.weight_bytes(shape, Setup(batch=1, seq=8, quantized=True, compute_bytes=2))
    assert terms["weights4bit"] == quantized
    assert terms["weights16bit"] == other


def test_adapter_parameters_are_peft_s_count(tiny_model):
    from finetune_trainer.models import ModelLocation, load_causal_lm, wrap_peft

    shape = Shape.from_config(tiny_config(tiny_model))
    for targets, names in ((["auto"], ("q_proj", "k_proj", "v_proj", "o_proj")), (["all-linear"], ("all-linear",))):
        base = load_causal_lm(ModelLocation("t", str(tiny_model)), dtype=None)
        model, _ = wrap_peft(base, PeftSpec(r=4, alpha=8, target_modules=targets), "CAUSAL_LM")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert memplan.adapter_params(shape, Setup(batch=1, seq=8, lora_r=4, targets=names)) == trainable
    assert planning.targets_of(["query", "value"]) == ("q_proj", "v_proj")


@pytest.mark.parametrize("measured", [MEASURED_PLAIN, MEASURED_PACKED])
def test_the_model_reproduces_the_measured_peaks_of_the_8b(measured):
    for (batch, seq), gib in measured.items():
        setup = Setup(batch=batch, seq=seq, dropout=0.05, packing=batch > 1 or seq == 1024)
        predicted = estimate(LLAMA_8B, setup).peak / GIB
        assert predicted == pytest.approx(gib, rel=0.03), (batch, seq)


def test_every_recorded_h100_run_is_predicted_within_ten_percent(monkeypatch):
    """Issue 22's matrix (17 runs measured on an H100): the trainer's own planning of each run's
    config, with the memory model as it is now, against the recorded peak."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_memory_plan

    rows = gpu_memory_plan.recorded(json.loads(MATRIX_RESULTS.read_text()))
    errors = {r["name"]: gpu_memory_plan.replan(r) / r["peakMemoryBytes"] - 1 for r in rows}
    assert len(errors) == 17
    assert all(abs(e) <= 0.10 for e in errors.values()), {n: f"{100 * e:+.1f} %" for n, e in errors.items()}


SMALL_LLAMA = dict(  # the SmolLM2 layout (grouped-query attention, a gated MLP), small enough for a test
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=256,
    tie_word_embeddings=True,
)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_layer_saves_for_backward_what_the_model_counts(attention, one_thread):
    """Every tensor autograd keeps for one decoder layer, counted with saved_tensors_hooks on a CPU
    in bf16 (LoRA with dropout on every linear layer, a padded batch with its mask, no
    checkpointing), is the model's count: the second layer's (the first one's input needs no
    gradient), less what the first layer kept already (RoPE's cos and sin, shared by all layers)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from finetune_trainer.models import wrap_peft

    torch.manual_seed(0)
    cfg = LlamaConfig(**SMALL_LLAMA, pad_token_id=0, attn_implementation=attention)
    model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    spec = PeftSpec(r=8, alpha=16, dropout=0.1, target_modules=["all-linear"])
    model, _ = wrap_peft(model, spec, "CAUSAL_LM")
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.bfloat16)  # TRL keeps QLoRA adapters in bf16
    layers, saved = model.base_model.model.model.layers, [dict[int, int](), dict[int, int]()]
    current = [-1]
    for i in (0, 1):
        layers[i].register_forward_pre_hook(lambda *_, i=i: current.__setitem__(0, i))
        layers[i].register_forward_hook(lambda *_: current.__setitem__(0, -1))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        storage = t.untyped_storage()
        if current[0] >= 0 and storage.data_ptr() not in weights:
            saved[current[0]][storage.data_ptr()] = storage.nbytes()
        return t

    batch, seq = 2, 48
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, seq // 2 :] = 0  # the second example is half as long: padding, so a mask
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=torch.randint(1, 256, (batch, seq)), attention_mask=mask)
    counted = sum(n for ptr, n in saved[1].items() if ptr not in saved[0])
    setup = Setup(batch=batch, seq=seq, dropout=0.1, lora_r=8, targets=("all-linear",), attention=attention)
    shape = Shape.from_config(cfg.to_dict())
    attn, after, _, _ = memplan.layer_bytes(shape, setup)
    # a CPU's dropout keeps its mask in the compute dtype (2 bytes), CUDA's fused dropout a bool (1 byte)
    cpu_masks = sum(i for i, _ in shape.linears().values())
    assert counted == (attn + after + cpu_masks) * batch * seq


def test_offloading_and_tiling_remove_their_terms():
    base = Setup(batch=1, seq=131072, dropout=0.05)
    plain = estimate(LLAMA_8B, base)
    offloaded = estimate(LLAMA_8B, memplan.with_fast_paths(base, offload=True))
    tiled = estimate(LLAMA_8B, memplan.with_fast_paths(base, offload=True, tiled_mlp=True))
    per_token_input = 2 * 4096 * 131072
    assert plain.terms["checkpoints"] == 32 * per_token_input and offloaded.terms["checkpoints"] == 2 * per_token_input
    assert offloaded.host_offload_bytes == 32 * per_token_input and plain.host_offload_bytes == 0
    assert tiled.terms["layer"] < offloaded.terms["layer"] - 3 * 2 * 14336 * 131072 * 0.9
    assert tiled.peak < offloaded.peak < plain.peak
    assert plain.moment == "layer-backward"
    assert estimate(LLAMA_8B, memplan.with_fast_paths(base, checkpointing=False)).moment == "no-checkpointing"


def gpu(gib: float) -> planning.Target:
    return planning.Target(int(gib * GIB), "test", True, 512 * GIB)


def config_8b(**training) -> TrainerConfig:
    return TrainerConfig.model_validate(
        {
            "model": {"source": "/m"},
            "dataset": {"source": "/d.jsonl"},
            "output": {"dir": "/o"},
            "peft": {"type": "qlora", "dropout": 0.05},
            "training": training,
        }
    )


def test_auto_fast_paths_follow_the_sequence_length_and_the_gpu():
    cfg = LLAMA_8B_CONFIG
    short = planning.plan_run(config_8b(batchSize=1, maxSeqLength=4096), cfg, gpu(80))
    assert (short.status.offload, short.status.tiled_mlp, short.fits) == (False, False, True)
    long = planning.plan_run(config_8b(batchSize=1, maxSeqLength=262144), cfg, gpu(80))
    assert (long.status.offload, long.status.tiled_mlp, long.fits) == (True, True, True)
    assert long.config.training.kernels.offload == "on" and long.status.host_offload_bytes == 64 * GIB
    off = planning.plan_run(config_8b(batchSize=1, maxSeqLength=262144, kernels={"offload": "off"}), cfg, gpu(80))
    assert off.fits is False and "training.kernels.offload: on" in off.status.suggestion
    on_cpu = planning.plan_run(config_8b(batchSize=1, maxSeqLength=262144), cfg, cpu())
    assert on_cpu.fits is None and not on_cpu.status.offload


def cpu() -> planning.Target:
    return planning.Target(None, "none", False, None)


def test_auto_batch_takes_the_largest_micro_batch_that_fits_and_keeps_the_step():
    cfg = LLAMA_8B_CONFIG
    sizes = {
        b: planning.plan_run(config_8b(batchSize=b, maxSeqLength=8192), cfg, gpu(1000)).estimate.required
        for b in (2, 4)
    }
    between = (sizes[2] + sizes[4]) / 2 / GIB
    plan = planning.plan_run(
        config_8b(batchSize="auto", gradientAccumulationSteps=3, maxSeqLength=8192), cfg, gpu(between)
    )
    assert (plan.status.micro_batch_size, plan.status.gradient_accumulation_steps) == (2, 6)
    assert plan.config.training.micro_batch_size == 2 and plan.config.training.gradient_accumulation_steps == 6
    assert plan.status.tokens_per_step == 12 * 8192
    assert planning.plan_run(config_8b(batchSize="auto"), cfg, cpu()).status.micro_batch_size == 4


def test_a_plan_that_cannot_fit_says_what_would(monkeypatch):
    cfg = LLAMA_8B_CONFIG
    plan = planning.plan_run(config_8b(batchSize=8, maxSeqLength=16384, kernels={"offload": "off"}), cfg, gpu(40))
    assert plan.fits is False
    line = planning.one_line(plan)
    assert "\n" not in line and "does not fit" in line and "training.batchSize: " in line
    assert "training.maxSeqLength: " in line
    with pytest.raises(planning.InsufficientGPUMemory):
        planning.check(plan)
    nothing = planning.plan_run(config_8b(batchSize=1, maxSeqLength=1024), cfg, gpu(4))
    assert "the model and adapter alone" in nothing.status.suggestion


def test_too_large_a_job_ends_before_the_model_loads(tiny_model, tmp_path, monkeypatch):
    from finetune_trainer import models

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models, "load_model", never)
    monkeypatch.setenv(planning.GPU_MEMORY_ENV, str(2 << 30))
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("text", 20))
    cfg = helpers.make_config(tiny_model, data, tmp_path / "out", training={"maxSeqLength": 65536, "batchSize": 8})
    started = time.monotonic()
    r = helpers.run_cli(cfg, tmp_path)
    assert r.rc == ExitCode.INSUFFICIENT_GPU_MEMORY == 14
    assert time.monotonic() - started < 30
    assert r.summary["reason"] == "InsufficientGPUMemory" and "\n" not in r.summary["message"]
    assert "would fit: training.batchSize: " in r.summary["message"]
    (plan,) = (MemoryPlan.model_validate(p) for p in r.plans)
    assert plan.fits is False and plan.gpu_memory_bytes == 2 << 30
    assert [p["stage"] for p in r.progress] == ["planning", "failed"]


def test_auto_batch_trains_with_the_micro_batch_it_chose(tiny_model, tmp_path, monkeypatch):
    data = helpers.write_jsonl(tmp_path / "train.jsonl", helpers.records("text", 40))
    settings = {"maxSteps": 2, "maxSeqLength": 64, "gradientAccumulationSteps": 2}
    cfg = TrainerConfig.model_validate(helpers.make_config(tiny_model, data, tmp_path / "o", training=settings))
    model_cfg = tiny_config(tiny_model)
    required = {
        b: planning.plan_run(
            cfg.model_copy(update={"training": cfg.training.model_copy(update={"batch_size": b})}), model_cfg, gpu(1000)
        ).estimate.required
        for b in (2, 4)
    }
    monkeypatch.setenv(planning.GPU_MEMORY_ENV, str((required[2] + required[4]) // 2))
    wire = helpers.make_config(tiny_model, data, tmp_path / "out", training={**settings, "batchSize": "auto"})
    r = helpers.run_cli(wire, tmp_path)
    assert r.rc == 0, r.summary
    metrics = json.loads((r.out / "metrics.json").read_text())
    assert metrics["globalBatchSize"] == 8  # 4 x accumulation 2, as batchSize 4 would train
    assert (metrics["memoryPlan"]["microBatchSize"], metrics["memoryPlan"]["gradientAccumulationSteps"]) == (2, 4)
    assert metrics["memoryPlan"]["etaSeconds"] is not None  # reported after the first steps


def test_plan_command_reads_a_finetunejob(tiny_model, tmp_path, capsys):
    from finetune_trainer.cli import main

    job = {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "big"},
        "spec": {
            "model": {"source": "pvc://models/llama-8b"},
            "dataset": {"source": "pvc://data/train.jsonl"},
            "output": {"pvc": "out"},
            "peft": {"type": "qlora"},
            "training": {"batchSize": 1, "maxSeqLength": 131072},
        },
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B_CONFIG))
    args = ["plan", "--config", str(tmp_path / "job.yaml"), "--model-config", str(tmp_path / "config.json")]
    assert main([*args, "--gpu-memory", "81559Mi"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["fits"] is True and fitted["tiledMlp"] is True and fitted["tokensPerStep"] == 4 * 131072
    assert main([*args, "--gpu-memory", "24GiB"]) == ExitCode.INSUFFICIENT_GPU_MEMORY
    assert "does not fit" in json.loads(capsys.readouterr().out)["summary"]
    assert main(["plan", "--config", str(tmp_path / "job.yaml")]) == ExitCode.INVALID_CONFIG
    assert "--model-config" in capsys.readouterr().err
    assert planning_bytes("80GiB") == 80 * GIB and planning_bytes("85520809984") == 85520809984


def planning_bytes(text: str) -> int:
    from finetune_trainer.plan_command import parse_bytes

    return parse_bytes(text)


def test_a_pod_given_gpus_it_cannot_see_plans_for_a_gpu(monkeypatch):
    """The dev node's fake GPU (and any GPU the operator checks by its node's label): the plan is a
    GPU's, with nothing in the pod to check it against."""
    from finetune_trainer import planning

    target = planning.Target.detect({"FINETUNE_GPUS": "1"})
    assert (target.gpu, target.gpu_bytes, target.source) == (True, None, "FINETUNE_GPUS")
    assert planning.Target.detect({"FINETUNE_GPUS": "0"}).gpu is False
