"""Stage ``planning``: the GPU memory plan of a run, before any weight loads or downloads.

It needs the model's config (``models.model_config``: config.json, a GGUF file's metadata, or one
small file from the Hub) and the TrainerConfig. It resolves what depends on memory:
``training.batchSize: auto`` (the largest micro-batch that fits, keeping 4 x accumulation steps
examples per optimizer step), and the ``auto`` fast paths (tiled MLP for sequences of at least
``LONG_SEQUENCE`` tokens or where the plan does not fit without it; activation offloading only
where it does not fit without it and the host has the memory). The GPU is the
``FINETUNE_GPU_MEMORY_BYTES`` variable the operator sets from the node's ``nvidia.com/gpu.memory``
label, else the CUDA device; without either (a CPU) nothing is checked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from finetune_api import contract
from finetune_api.protocol import MemoryPlan
from finetune_api.training import KernelsSpec, Method, PeftType, TrainerConfig

from .errors import ConfigError, InsufficientGPUMemory
from .memplan import GIB, Estimate, Setup, Shape, estimate

log = logging.getLogger("finetune_trainer")

GPU_MEMORY_ENV = contract.GPU_MEMORY_ENV
GPUS_ENV = "FINETUNE_GPUS"
"""The pod's nvidia.com/gpu request (set by the operator): with GPUs the plan is a GPU's, CUDA visible or not."""
LONG_SEQUENCE = 32768
"""From this sequence length on, the tiled MLP is on by default (attention dominates the step there)."""
HOST_SHARE = 0.8
"""Offloaded activations may take this share of the container's (or machine's) memory."""
AUTO_BATCHES = (64, 32, 16, 8, 4, 2, 1)
SYNONYMS = {
    "query": ("q_proj",),
    "key": ("k_proj",),
    "value": ("v_proj",),
    "q_lin": ("q_proj",),
    "k_lin": ("k_proj",),
    "v_lin": ("v_proj",),
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "c_attn": ("q_proj", "k_proj", "v_proj"),
    "query_key_value": ("q_proj", "k_proj", "v_proj"),
    "Wqkv": ("q_proj", "k_proj", "v_proj"),
    "dense": ("o_proj",),
    "out_proj": ("o_proj",),
    "auto": ("q_proj", "k_proj", "v_proj", "o_proj"),
}


@dataclass(frozen=True)
class Target:
    """The device the run is planned for."""

    gpu_bytes: int | None
    """GPU memory to fit (None: nothing to check against)."""
    source: str
    """Where ``gpu_bytes`` came from: the environment variable, the CUDA device, or none."""
    gpu: bool
    """Planned for a GPU (bf16 compute, the fast paths): CUDA here or a GPU size given."""
    host_bytes: int | None = None

    @classmethod
    def detect(cls, env: Mapping[str, str] | None = None) -> Target:
        env = os.environ if env is None else env
        raw = env.get(GPU_MEMORY_ENV, "").strip()
        if raw:
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{GPU_MEMORY_ENV}={raw!r} is not a number of bytes") from None
            return cls(value, GPU_MEMORY_ENV, True, host_memory_bytes())
        import torch

        if torch.cuda.is_available():
            return cls(int(torch.cuda.get_device_properties(0).total_memory), "cuda", True, host_memory_bytes())
        if env.get(GPUS_ENV, "0").strip() not in ("", "0"):
            # the pod was given GPUs that this process cannot see as CUDA devices (a GPU the operator
            # checks by its node's label): plan for a GPU, with nothing here to check against
            return cls(None, GPUS_ENV, True, host_memory_bytes())
        return cls(None, "none", False, host_memory_bytes())


def host_memory_bytes() -> int | None:
    """The container's memory limit (cgroup v2 or v1), else the machine's memory."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def targets_of(names: list[str]) -> tuple[str, ...]:
    """peft.targetModules in the memory model's (Llama) names."""
    if names == ["all-linear"]:
        return ("all-linear",)
    return tuple(dict.fromkeys(t for n in names for t in SYNONYMS.get(n, (n,))))


def base_setup(config: TrainerConfig, target: Target, batch: int) -> Setup:
    """The run's settings on ``target``, every ``auto`` fast path off."""
    t, peft = config.training, config.peft
    quantization = peft.quantization
    fp32 = not target.gpu or (quantization is not None and quantization.compute_dtype == "float32")
    packing = t.packing and config.method is Method.SFT
    kernel = t.kernels.attention
    if kernel == "eager":
        attention = "eager"
    elif packing:
        attention = "sdpa" if kernel == "sdpa" or not target.gpu else "flash"
    else:
        attention = "flash" if batch == 1 else "sdpa"  # a padded batch carries a mask
    return Setup(
        batch=batch,
        seq=t.max_seq_length,
        quantized=peft.type is PeftType.QLORA,
        double_quant=quantization.double_quant if quantization is not None else True,
        compute_bytes=4 if fp32 else 2,
        lora_r=peft.r,
        targets=targets_of(list(peft.target_modules)),
        dropout=peft.dropout,
        checkpointing=t.gradient_checkpointing,
        packing=packing,
        optimizer=t.optimizer if target.gpu else "adamw_torch",
        attention=attention,
        liger=t.kernels.liger and target.gpu,
        offload=t.kernels.offload == "on" and target.gpu,
        tiled_mlp=t.kernels.tiled_mlp == "on",
        tile_tokens=t.kernels.tile_tokens,
        lm_head=config.method is not Method.CLASSIFICATION,
        sequences_per_example=2 if config.method is Method.DPO else 1,
    )


def fits(est: Estimate, target: Target) -> bool | None:
    return None if target.gpu_bytes is None else est.required <= target.gpu_bytes


def host_allows(est: Estimate, target: Target) -> bool:
    return target.host_bytes is None or est.host_offload_bytes <= HOST_SHARE * target.host_bytes


def choose_fast_paths(shape: Shape, setup: Setup, kernels: KernelsSpec, target: Target, savers: bool) -> Setup:
    """The ``auto`` fast paths: tiled MLP from ``LONG_SEQUENCE`` tokens; with ``savers``, whatever of
    tiled MLP and offloading it takes to fit."""
    if not target.gpu:
        return setup
    if kernels.tiled_mlp == "auto" and setup.seq >= LONG_SEQUENCE:
        setup = replace(setup, tiled_mlp=True)
    if not savers:
        return setup
    if kernels.tiled_mlp == "auto" and fits(estimate(shape, setup), target) is False:
        setup = replace(setup, tiled_mlp=True)
    if kernels.offload == "auto" and setup.checkpointing and fits(estimate(shape, setup), target) is False:
        offloaded = replace(setup, offload=True)
        if host_allows(estimate(shape, offloaded), target):
            setup = offloaded
    return setup


def choose(config: TrainerConfig, shape: Shape, target: Target, batches: list[int]) -> tuple[Setup, Estimate]:
    """The largest micro-batch of ``batches`` that fits without the memory savers that cost time
    (offloading, tiling short sequences), else the largest that fits with them, else the smallest."""
    for savers in (False, True):
        for batch in batches:
            setup = choose_fast_paths(shape, base_setup(config, target, batch), config.training.kernels, target, savers)
            est = estimate(shape, setup)
            if fits(est, target) is not False:
                return setup, est
    return setup, est


@dataclass
class Plan:
    config: TrainerConfig
    """The config with ``auto`` resolved: micro-batch, accumulation, offload and tiled MLP on or off."""
    setup: Setup
    estimate: Estimate
    target: Target
    status: MemoryPlan

    @property
    def fits(self) -> bool | None:
        return self.status.fits


def plan_run(config: TrainerConfig, model_cfg: Mapping, target: Target) -> Plan:
    """The plan of ``config`` for the model ``model_cfg`` on ``target`` (raises nothing when it does not fit)."""
    shape = Shape.from_config(model_cfg)
    t = config.training
    auto = t.batch_size == "auto"
    per_step = 4 * t.gradient_accumulation_steps if auto else t.micro_batch_size * t.gradient_accumulation_steps
    if auto and target.gpu_bytes is not None:
        batches = [b for b in AUTO_BATCHES if b <= per_step and per_step % b == 0]
    else:
        batches = [4 if auto else t.micro_batch_size]
    setup, est = choose(config, shape, target, batches)
    accumulation = max(1, per_step // setup.batch) if auto else t.gradient_accumulation_steps
    kernels = t.kernels.model_copy(
        update={"offload": "on" if setup.offload else "off", "tiled_mlp": "on" if setup.tiled_mlp else "off"}
    )
    training = t.model_copy(update={"batch_size": setup.batch, "gradient_accumulation_steps": accumulation})
    resolved = config.model_copy(update={"training": training.model_copy(update={"kernels": kernels})})
    status = plan_status(setup, est, target, accumulation)
    if status.fits is False:
        status = status.model_copy(update={"suggestion": suggestion(shape, setup, target, accumulation)})
    return Plan(resolved, setup, est, target, status)


def unplanned(config: TrainerConfig) -> TrainerConfig:
    """The config without a plan (a model whose shape the memory model cannot read): ``auto`` batch
    is 4, the ``auto`` fast paths are off."""
    t = config.training
    kernels = t.kernels.model_copy(
        update={"offload": "on" if t.kernels.offload == "on" else "off", "tiled_mlp": t.kernels.tiled_mlp}
    )
    if t.kernels.tiled_mlp == "auto":
        kernels = kernels.model_copy(update={"tiled_mlp": "off"})
    batch = 4 if t.batch_size == "auto" else t.batch_size
    return config.model_copy(update={"training": t.model_copy(update={"batch_size": batch, "kernels": kernels})})


def plan_status(setup: Setup, est: Estimate, target: Target, accumulation: int) -> MemoryPlan:
    return MemoryPlan(
        predicted_peak_bytes=est.peak,
        predicted_peak_gi_b=round(est.peak / GIB, 2),
        required_bytes=est.required,
        gpu_memory_bytes=target.gpu_bytes,
        fits=fits(est, target),
        host_offload_bytes=est.host_offload_bytes,
        tokens_per_step=setup.batch * setup.seq * accumulation,
        micro_batch_size=setup.batch,
        gradient_accumulation_steps=accumulation,
        offload=setup.offload,
        tiled_mlp=setup.tiled_mlp,
        terms=dict(est.terms),
    )


def suggestion(shape: Shape, setup: Setup, target: Target, accumulation: int) -> str:
    """Settings that would fit, in one line: the memory savers that are off, a smaller micro-batch
    with more accumulation, a shorter maxSeqLength."""
    ways = []
    savers: list[tuple[bool, Callable[[Setup], Setup], str]] = [
        (not setup.checkpointing, lambda s: replace(s, checkpointing=True), "training.gradientCheckpointing: true"),
        (not setup.tiled_mlp, lambda s: replace(s, tiled_mlp=True), "training.kernels.tiledMlp: on"),
        (not setup.offload, lambda s: replace(s, offload=True), "training.kernels.offload: on"),
    ]
    trial, turned = setup, list[str]()
    for off, turn_on, text in savers:
        if off:
            trial, turned = turn_on(trial), [*turned, text]
            if fits(estimate(shape, trial), target) and host_allows(estimate(shape, trial), target):
                ways.append(", ".join(turned))
                break
    smaller = [b for b in range(setup.batch - 1, 0, -1) if fits(estimate(shape, replace(setup, batch=b)), target)]
    if smaller:
        b = smaller[0]
        ways.append(f"training.batchSize: {b} with gradientAccumulationSteps: {-(-setup.batch * accumulation // b)}")
    seq = longest_fitting(shape, setup, target)
    if seq:
        ways.append(f"training.maxSeqLength: {seq}")
    if not ways:
        return "nothing on this GPU: the model and adapter alone need more than it has"
    return "; or ".join(ways)


def longest_fitting(shape: Shape, setup: Setup, target: Target) -> int | None:
    """The longest maxSeqLength (a multiple of 256, at least 256) that fits, if any."""
    lo, hi = 0, setup.seq // 256
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(estimate(shape, replace(setup, seq=256 * mid)), target):
            lo = mid
        else:
            hi = mid - 1
    return 256 * lo if lo and 256 * lo < setup.seq else None


def one_line(plan: Plan) -> str:
    """``predicted 61.3 GiB (weights 5.3, activations 55.1) ...`` for logs and the failure message."""
    s, est = plan.status, plan.estimate
    top = sorted(est.terms.items(), key=lambda kv: -kv[1])[:4]
    terms = ", ".join(f"{k} {v / GIB:.2f}" for k, v in top)
    text = (
        f"memory plan: {s.micro_batch_size} x {plan.setup.seq} tokens x {s.gradient_accumulation_steps} steps, "
        f"offload {'on' if s.offload else 'off'}, tiled MLP {'on' if s.tiled_mlp else 'off'}: predicted peak "
        f"{est.peak / GIB:.2f} GiB ({terms}), needs {est.required / GIB:.2f} GiB"
    )
    if s.gpu_memory_bytes is not None:
        text += f" of the GPU's {s.gpu_memory_bytes / GIB:.2f} GiB ({plan.target.source})"
    if s.host_offload_bytes:
        text += f", {s.host_offload_bytes / GIB:.2f} GiB of host memory for offloading"
    if s.fits is False:
        text += f": does not fit; would fit: {s.suggestion}"
    return text


def check(plan: Plan) -> None:
    """End the run, before the model loads, when the plan does not fit."""
    if plan.fits is False:
        raise InsufficientGPUMemory(one_line(plan))


def make_plan_callback(reporter, plan: Plan, after_steps: int = 2):
    """A TrainerCallback that reports the measured peak and the ETA once ``after_steps`` steps ran."""
    import time

    import torch
    from transformers import TrainerCallback

    class PlanCallback(TrainerCallback):
        def __init__(self):
            self.t0 = time.monotonic()
            self.start = 0
            self.done = False

        def on_train_begin(self, args, state, control, **kw):
            self.t0, self.start = time.monotonic(), state.global_step

        def on_step_end(self, args, state, control, **kw):
            steps = state.global_step - self.start
            if self.done or steps < min(after_steps, max(1, state.max_steps - self.start)):
                return
            self.done = True
            eta = (time.monotonic() - self.t0) / steps * max(0, state.max_steps - state.global_step)
            update: dict = {"eta_seconds": round(eta, 1)}
            if torch.cuda.is_available():
                peak = int(torch.cuda.max_memory_allocated())
                update.update(measured_peak_bytes=peak, measured_peak_gi_b=round(peak / GIB, 2))
                log.info(
                    "memory plan: predicted %.2f GiB, measured %.2f GiB after %d steps (%+.1f%%)",
                    plan.status.predicted_peak_bytes / GIB,
                    peak / GIB,
                    steps,
                    100 * (plan.status.predicted_peak_bytes - peak) / max(peak, 1),
                )
            plan.status = plan.status.model_copy(update=update)
            reporter.report_plan(plan.status)

    return PlanCallback()
