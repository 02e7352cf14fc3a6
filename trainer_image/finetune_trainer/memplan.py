"""A model of the GPU memory a training step takes, from the model's config.json and the run's
settings alone (no GPU, no weights): the peak of ``torch.cuda.max_memory_allocated``, term by term.

The step's peak is the largest of a few moments, each the memory that stays for the whole step
(weights, adapter, its gradients and optimizer state, workspaces) plus what is alive then:

* ``layer-backward``: with gradient checkpointing, the layer inputs kept for every layer (on the
  host with offloading: one layer prefetched), the one layer recomputed with everything it saves
  for its backward, and the gradients its backward creates (the MLP's, or attention's with the
  flash kernel's fp32 ``dq`` accumulator, whichever is larger).
* ``loss``: the start of the backward pass, when TRL's chunked LM head turns the saved hidden
  states into their fp32 gradient (the logits are never whole: 4096 tokens x 32768 vocabulary
  entries at a time).
* without checkpointing, every layer's saved activations at once.

Per-token bytes follow what each op saves for backward in PyTorch (bf16 compute under autocast,
``a`` bytes an element): an eager RMSNorm keeps its fp32 input and 1/rms (4 x hidden + 4); a
LoRA'd projection with dropout keeps its dropout output and mask (a + 1 bytes x its input width);
flash attention keeps q, k, v, the output and the log-sum-exp; sdpa with a mask (a padded batch)
keeps k and v repeated to every head and, in every layer, the mask converted to the compute
dtype (a x sequence length per token); a gated MLP keeps gate, up and act(gate) (3 x a x
intermediate). bitsandbytes' 4-bit matmul keeps nothing (its weight is frozen). A CPU count of
what autograd saves in one layer checks these (tests/unit/trainer/test_memory_plan.py). Tokens per
micro-batch are ``batch x maxSeqLength`` (packing fills rows; without packing, the longest
example sets the width). Figures against measurement: docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

GIB = 1 << 30
WORKSPACE_BYTES = 48 << 20
"""cuBLAS/cuBLASLt workspaces, allocated through PyTorch's allocator."""
HEAD_TILE = (4096, 32768)
"""The chunked LM head's logits tile (TRL: up to 4096 tokens x 32768 vocabulary columns, whatever the vocabulary)."""
CONTEXT_BYTES = 768 << 20
"""CUDA context and kernels' own memory, outside PyTorch's allocator (what `requiredBytes` adds)."""
SLACK = 0.10
"""Margin on the predicted peak: allocator slack and the worst under-predictions measured (docs/benchmarks.md)."""
GATED = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    """The architecture, from a transformers config (``config.json``)."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool = False
    gated: bool = True

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Shape:
        """Llama-family names, with the GPT-2/BERT spellings as fallbacks; a VLM's text config if nested."""
        cfg = cfg.get("text_config") or cfg
        hidden = int(_first(cfg, "hidden_size", "n_embd", "d_model"))
        heads = int(_first(cfg, "num_attention_heads", "n_head"))
        model_type = str(cfg.get("model_type", ""))
        return cls(
            model_type=model_type,
            hidden=hidden,
            intermediate=int(_first(cfg, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)),
            layers=int(_first(cfg, "num_hidden_layers", "n_layer")),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab=int(cfg["vocab_size"]),
            tied=bool(cfg.get("tie_word_embeddings", model_type not in ("llama", "mistral", "qwen2", "qwen3"))),
            gated=model_type not in ("gpt2", "bert", "roberta", "distilbert", "gpt_neox", "opt", "falcon"),
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one block."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        out = {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv)}
        out["o_proj"] = (q, self.hidden)
        if self.gated:
            out["gate_proj"] = (self.hidden, self.intermediate)
        out["up_proj"] = (self.hidden, self.intermediate)
        out["down_proj"] = (self.intermediate, self.hidden)
        return out


def _first(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is None:
        raise KeyError(keys[0])
    return default


@dataclass(frozen=True)
class Setup:
    """What the run does with the model, as the trainer resolves its config on the target device."""

    batch: int
    seq: int
    quantized: bool = True
    double_quant: bool = True
    compute_bytes: int = 2
    """2 on a GPU (bf16/fp16 autocast), 4 in fp32."""
    lora_r: int = 16
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    dropout: float = 0.1
    checkpointing: bool = True
    packing: bool = False
    optimizer: str = "paged_adamw_8bit"
    attention: str = "flash"
    """flash (flash/varlen kernels), sdpa (a mask: padded batches, or packing without varlen), eager."""
    liger: bool = False
    offload: bool = False
    tiled_mlp: bool = False
    tile_tokens: int = 16384
    lm_head: bool = True
    """A causal LM's vocabulary head (sft, dpo); False for classification."""
    sequences_per_example: int = 1
    """2 for DPO (chosen and rejected)."""

    @property
    def tokens(self) -> int:
        return self.batch * self.seq * self.sequences_per_example


@dataclass
class Estimate:
    """The predicted peak and its terms (bytes); ``moment`` names when the peak happens."""

    terms: dict[str, int]
    moment: str
    host_offload_bytes: int = 0
    paged_optimizer_bytes: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def peak(self) -> int:
        return sum(self.terms.values())

    @property
    def required(self) -> int:
        """What the GPU must hold: the peak with slack, the CUDA context and paged optimizer state."""
        return int(self.peak * (1 + SLACK)) + CONTEXT_BYTES + self.paged_optimizer_bytes


def quantized_bytes(n: int, double_quant: bool) -> int:
    """NF4/FP4 weight of ``n`` elements: packed nibbles plus block scales (8-bit scales of 256-block
    fp32 scales with double quantization, fp32 per 64 elements without) and the code tables (16
    fp32 values; the nested 256 and an fp32 offset)."""
    blocks = -(-n // 64)
    if double_quant:
        return n // 2 + blocks + 4 * -(-blocks // 256) + 4 * (16 + 256 + 1)
    return n // 2 + 4 * blocks + 4 * 16


def weight_bytes(shape: Shape, setup: Setup) -> dict[str, int]:
    """The base model: the linear layers (4-bit or 16-bit), embeddings, LM head and norms (16-bit)."""
    per_layer = [i * o for i, o in shape.linears().values()]
    if setup.quantized:
        linear = shape.layers * sum(quantized_bytes(n, setup.double_quant) for n in per_layer)
    else:
        linear = shape.layers * sum(per_layer) * setup.compute_bytes
    embed = shape.vocab * shape.hidden * setup.compute_bytes
    head = 0 if shape.tied or not setup.lm_head else embed
    norms = (2 * shape.layers + 1) * shape.hidden * setup.compute_bytes
    return {"weights4bit" if setup.quantized else "weights": linear, "weights16bit": embed + head + norms}


def adapter_params(shape: Shape, setup: Setup) -> int:
    chosen = {n: d for n, d in shape.linears().items() if _targeted(n, setup)}
    return shape.layers * sum(setup.lora_r * (i + o) for i, o in chosen.values())


def _targeted(name: str, setup: Setup) -> bool:
    return "all-linear" in setup.targets or name in setup.targets


def adapter_bytes(shape: Shape, setup: Setup) -> dict[str, int]:
    """LoRA matrices (bf16 on a 4-bit base, as TRL keeps them; fp32 otherwise), their gradients and
    the optimizer state; paged optimizers keep theirs in CUDA managed memory, outside the allocator."""
    n = adapter_params(shape, setup)
    each = 2 if setup.quantized and setup.compute_bytes == 2 else 4
    state = {"adamw_torch": 2 * each, "adamw_8bit": 2, "paged_adamw_8bit": 2, "paged_adamw_32bit": 8}
    optimizer = n * state.get(setup.optimizer, 0)
    paged = setup.optimizer.startswith("paged")
    return {"adapter": n * each, "gradients": n * each, "optimizer": 0 if paged else optimizer}


def paged_optimizer_bytes(shape: Shape, setup: Setup) -> int:
    n = adapter_params(shape, setup)
    return n * (2 if setup.optimizer == "paged_adamw_8bit" else 8) if setup.optimizer.startswith("paged") else 0


def lora_saved(shape: Shape, setup: Setup, names: tuple[str, ...]) -> int:
    """Per-token bytes the LoRA branches of ``names`` (sharing one input) keep: with dropout, each its
    dropout output and mask; without, the shared input once (a per-branch copy for fp32 adapters)."""
    a = setup.compute_bytes
    chosen = [shape.linears()[n] for n in names if n in shape.linears() and _targeted(n, setup)]
    if not chosen:
        return 0
    fp32_adapters = not setup.quantized and a == 2
    if setup.dropout > 0:
        per = [(a + 1) * i for i, _ in chosen]
    else:
        per = [a * i for i, _ in chosen] if fp32_adapters else [a * chosen[0][0]]
    return sum(per) + sum(setup.lora_r * (a if not fp32_adapters else 4) for _ in chosen)


def attention_saved(shape: Shape, setup: Setup) -> int:
    """Per-token bytes attention keeps: q and k after RoPE, v, the output, the fp32 log-sum-exp;
    with a mask (sdpa's memory-efficient kernel) k and v repeated to every head, and the mask's row.

    sdpa turns the boolean mask into an additive one in the compute dtype (``convert_boolean_attn_mask``)
    in every layer's call, and its kernel keeps that copy for the backward (``attn_bias``): ``a`` bytes
    per mask element per layer (the 4 x 4096 padded SmolLM2 run without checkpointing: 30 layers x 128
    MiB, which the model missed). Eager attention keeps q and k, v repeated to every head, and the
    softmax probabilities twice: its fp32 output (for the softmax's backward) and the compute-dtype
    copy the matmul with v keeps."""
    a, q, kv = setup.compute_bytes, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    if setup.attention == "flash":
        return a * (2 * q + 2 * kv) + 4 * shape.heads
    if setup.attention == "sdpa":
        return a * 4 * q + 4 * shape.heads + a * mask_row(setup)
    probabilities = 4 + (a if a != 4 else 0)  # fp32 softmax output, and its cast to the compute dtype
    return a * 3 * q + probabilities * shape.heads * setup.seq


def layer_bytes(shape: Shape, setup: Setup) -> tuple[int, int, int, int]:
    """Per-token bytes of one layer: (kept through attention's backward, kept after attention,
    MLP backward transient, attention backward transient)."""
    a, h = setup.compute_bytes, shape.hidden
    # an RMSNorm keeps its input (Liger) or an fp32 copy of it (eager), and the fp32 1/rms of each token
    norm = (a * h if setup.liger else 4 * h) + 4
    norm1 = 4 if setup.liger else norm  # Liger's first norm keeps the layer input, already counted
    attn = norm1 + lora_saved(shape, setup, ("q_proj", "k_proj", "v_proj")) + attention_saved(shape, setup)
    if setup.tiled_mlp:
        mlp = a * h
        mlp_bwd = 2 * a * h
    else:
        up = ("gate_proj", "up_proj") if shape.gated else ("up_proj",)
        acts = (2 if setup.liger else 3) if shape.gated else 1
        mlp = acts * a * shape.intermediate + lora_saved(shape, setup, up) + lora_saved(shape, setup, ("down_proj",))
        mlp_bwd = a * h + (3 if shape.gated else 1) * a * shape.intermediate
    after = lora_saved(shape, setup, ("o_proj",)) + norm + mlp
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    attn_bwd = 2 * a * h + a * (q + 2 * kv) + 4 * q + 4 * shape.heads  # grads in and out, dq/dk/dv, fp32 dq
    return attn, after, mlp_bwd, attn_bwd


def static_bytes(shape: Shape, setup: Setup) -> dict[str, int]:
    terms = weight_bytes(shape, setup) | adapter_bytes(shape, setup)
    i, o = max(shape.linears().values(), key=lambda io: io[0] * io[1])
    dequant = i * o * setup.compute_bytes if setup.quantized else 0  # a 4-bit weight dequantized in backward
    terms["workspace"] = WORKSPACE_BYTES + dequant
    return terms


def estimate(shape: Shape, setup: Setup) -> Estimate:
    """The predicted peak of one training step: the largest of its moments."""
    a, h, t = setup.compute_bytes, shape.hidden, setup.tokens
    attn, after, mlp_bwd, attn_bwd = layer_bytes(shape, setup)
    tiles = 0
    if setup.tiled_mlp:
        width = (3 if shape.gated else 1) * shape.intermediate
        tiles = min(t, setup.tile_tokens) * 2 * a * width  # one tile's intermediates and their gradients
    masks = _mask_bytes(setup)
    inputs = t * 8 * 3  # input ids, labels, positions (int64)
    static = static_bytes(shape, setup)
    if not setup.checkpointing:
        kept = shape.layers * (attn + after) * t + a * h * t
        moments = {"no-checkpointing": {"activations": kept, "backward": max(mlp_bwd, attn_bwd) * t + tiles}}
    else:
        resident = shape.layers if not setup.offload else 2  # offloaded: the input in use and the prefetched one
        ckpt = resident * a * h * t
        moments = {
            "layer-backward": {
                "checkpoints": ckpt,
                "layer": (attn + after) * t,
                "backward": max(mlp_bwd * t + tiles, attn_bwd * t - after * t),
                "gradient": a * h * t,
            },
        }
        if setup.lm_head:
            tile = min(t, HEAD_TILE[0]) * HEAD_TILE[1] * a
            head = (4 * h + 4 + a * h + 4 * h + 2 * a * h) * t + tile  # norm fp32, kept hidden, fp32 and bf16 grads
            moments["loss"] = {"checkpoints": ckpt, "loss": head}
    moment = max(moments, key=lambda m: sum(moments[m].values()))
    terms = static | {"inputs": inputs, "masks": masks} | moments[moment]
    host = shape.layers * a * h * t if setup.offload and setup.checkpointing else 0
    return Estimate(terms, moment, host, paged_optimizer_bytes(shape, setup))


def mask_row(setup: Setup) -> int:
    """Elements of the attention mask per query token: a packed row's width (the block-diagonal mask
    over the whole row), a padded batch's sequence length; none with the flash kernels or one sequence."""
    if setup.attention == "flash":
        return 0
    if setup.packing:
        return setup.batch * setup.seq
    return setup.seq if setup.batch > 1 else 0


def _mask_bytes(setup: Setup) -> int:
    """The boolean attention mask transformers builds once for the forward (a byte an element)."""
    return setup.batch * setup.seq * mask_row(setup)


def with_fast_paths(setup: Setup, **changes: Any) -> Setup:
    return replace(setup, **changes)
