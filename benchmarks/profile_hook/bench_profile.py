"""See sitecustomize.py: a profiling window over two training steps, and the previous 4-bit preparation."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import torch

GiB = 2**30
OWN_CODE = (
    "finetune_trainer",
    "/trl/",
    "/peft/",
    "/transformers/",
    "/bitsandbytes/",
    "/liger_kernel/",
    "plain_trl_sft",
)


def install() -> None:
    if os.environ.get("FINETUNE_BENCH_PREVIOUS_KBIT"):
        from peft import prepare_model_for_kbit_training

        import finetune_trainer.models as models

        freeze = models.freeze

        def previous_freeze(model):
            if models.is_quantized(model):
                return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
            return freeze(model)

        models.freeze = previous_freeze
    if os.environ.get("FINETUNE_BENCH_PROFILE"):
        from transformers import Trainer

        init = Trainer.__init__

        def patched(self, *args, **kwargs):
            init(self, *args, **kwargs)
            first, last = (int(x) for x in os.environ.get("FINETUNE_BENCH_PROFILE_STEPS", "5,6").split(","))
            self.add_callback(ProfileWindow(os.environ["FINETUNE_BENCH_PROFILE"], first, last))

        Trainer.__init__ = patched


def parameter_memory(model) -> dict[str, float]:
    """GiB of parameters by kind: 4-bit, trainable (LoRA), and the other frozen weights by dtype."""
    out: dict[str, float] = defaultdict(float)
    for name, p in model.named_parameters():
        if type(p).__name__ == "Params4bit":
            kind = "4-bit weights (+ quantization state not counted)"
        elif p.requires_grad:
            kind = f"trained ({p.dtype})"
        else:
            kind = f"frozen {'embedding/lm_head' if 'embed' in name or 'lm_head' in name else 'other'} ({p.dtype})"
        out[kind] += p.numel() * p.element_size() / GiB
    return {k: round(v, 3) for k, v in sorted(out.items())}


def site(frames: list[dict]) -> str:
    """The innermost frame in the libraries that shape the step (not torch's own code)."""
    for f in frames:
        name = f.get("filename", "")
        if any(k in name for k in OWN_CODE):
            short = name.split("site-packages/")[-1]
            return f"{short}:{f.get('line')} {f.get('name')}"
    return "torch internals / allocated elsewhere"


def peak_composition(snapshot: dict, start: int) -> dict:
    """Replay the recorded allocations: the peak and what was live then, by allocation site."""
    trace = [e for t in snapshot.get("device_traces", []) for e in t]
    cur = peak = start
    peak_at = -1
    for i, e in enumerate(trace):
        if e["action"] == "alloc":
            cur += e["size"]
        elif e["action"] == "free_completed":
            cur -= e["size"]
        if cur > peak:
            peak, peak_at = cur, i
    live: dict[int, dict] = {}
    for e in trace[: peak_at + 1]:
        if e["action"] == "alloc":
            live[e["addr"]] = e
        elif e["action"] == "free_completed":
            live.pop(e["addr"], None)
    by_site: dict[str, int] = defaultdict(int)
    for e in live.values():
        by_site[site(e.get("frames") or [])] += e["size"]
    top = sorted(by_site.items(), key=lambda kv: -kv[1])[:15]
    return {
        "allocatedAtWindowStartGiB": round(start / GiB, 3),
        "peakInWindowGiB": round(peak / GiB, 3),
        "liveAtPeakAllocatedInWindowGiB": round(sum(by_site.values()) / GiB, 3),
        "liveAtPeakBySite": [{"site": k, "GiB": round(v / GiB, 3)} for k, v in top],
    }


KERNEL_CLASSES = (
    ("attention", ("flash", "fmha", "attention", "attn")),
    ("4-bit dequantize", ("dequant", "kdequantize")),
    ("matmul", ("gemm", "nvjet", "cutlass", "sm90", "xmma", "cublas")),
    ("triton (liger / fused head)", ("triton",)),
    ("copy / cast", ("copy", "cast", "to_copy")),
    ("elementwise / reduce", ("elementwise", "reduce", "vectorized")),
)


def kernel_class(name: str) -> str:
    low = name.lower()
    for label, keys in KERNEL_CLASSES:
        if any(k in low for k in keys):
            return label
    return "other"


def kernel_times(prof, steps: int) -> dict:
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if t and e.device_type.name == "CUDA":
            rows.append((e.key, t / 1000 / steps, e.count / steps))
    by_class: dict[str, float] = defaultdict(float)
    for name, ms, _ in rows:
        by_class[kernel_class(name)] += ms
    rows.sort(key=lambda r: -r[1])
    return {
        "cudaMsPerStep": round(sum(r[1] for r in rows), 1),
        "byClassMsPerStep": {k: round(v, 1) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1])},
        "topKernels": [
            {"kernel": n[:120], "msPerStep": round(ms, 2), "callsPerStep": round(c, 1)} for n, ms, c in rows[:15]
        ],
    }


from transformers import TrainerCallback  # noqa: E402


class ProfileWindow(TrainerCallback):
    def __init__(self, out: str, first: int, last: int):
        self.out, self.first, self.last = out, first, last
        self.prof = None
        self.start = 0
        self.result: dict = {}

    def on_step_begin(self, args, state, control, model=None, **kw):
        if state.global_step + 1 != self.first or not torch.cuda.is_available():
            return
        try:
            self.start_window(model)
        except Exception as exc:  # profiling must not end the measured run
            self.fail(exc)

    def on_step_end(self, args, state, control, **kw):
        if state.global_step != self.last or self.prof is None:
            return
        try:
            self.end_window()
        except Exception as exc:
            self.fail(exc)

    def fail(self, exc: Exception) -> None:
        self.prof = None
        self.result["error"] = f"{type(exc).__name__}: {exc}"[:1000]
        self.result["window"] = [self.first, self.last]
        with open(self.out, "w") as f:
            json.dump(self.result, f, indent=2)

    def start_window(self, model) -> None:
        torch.cuda.synchronize()
        self.start = torch.cuda.memory_allocated()
        self.result["parametersGiB"] = parameter_memory(model)
        self.result["allocatedBeforeWindowGiB"] = round(self.start / GiB, 3)
        self.result["peakAllocatedBeforeWindowGiB"] = round(torch.cuda.max_memory_allocated() / GiB, 3)
        torch.cuda.memory._record_memory_history(enabled="all", context="all", stacks="python", max_entries=2_000_000)
        self.prof = torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        )
        self.prof.__enter__()

    def end_window(self) -> None:
        torch.cuda.synchronize()
        self.prof.__exit__(None, None, None)
        snapshot = torch.cuda.memory._snapshot()
        torch.cuda.memory._record_memory_history(enabled=None)
        self.result["window"] = [self.first, self.last]
        self.result["memory"] = peak_composition(snapshot, self.start)
        self.result["kernels"] = kernel_times(self.prof, self.last - self.first + 1)
        with open(self.out, "w") as f:
            json.dump(self.result, f, indent=2)
        self.prof = None
