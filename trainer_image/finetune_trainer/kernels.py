"""Fast paths of the training step (``training.kernels``): the attention kernel and Liger's kernels.

Each computes the same function as the plain path; none is used on a CPU unless asked for.

Variable-length attention
-------------------------
With ``packing: true`` TRL packs examples best-fit into rows of ``maxSeqLength`` tokens and
collates a batch padding-free: every example of the batch in one row, with ``position_ids``
restarting at each example and the example boundaries as ``cu_seq_lens_q/k``. PyTorch's
``sdpa`` handles such a row only with an explicit block-diagonal mask over the whole row
(batch 4 x 1024: a 4096 x 4096 mask), so it computes every pair of tokens and throws most away,
and the mask rules out its flash kernel. ``varlen`` runs flash attention over each example on
its own (PyTorch's variable-length flash kernel), which is what the mask means. Batches without
example boundaries (evaluation, generation, DPO) go to ``sdpa`` unchanged.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from functools import lru_cache

from finetune_api.training import KernelsSpec

log = logging.getLogger("finetune_trainer")

VARLEN = "finetune_varlen"
"""The attention implementation name registered with transformers."""


def attention_implementation(spec: KernelsSpec) -> str:
    """The ``attn_implementation`` to load a causal LM with."""
    import torch

    choice = spec.attention
    if choice == "auto":
        choice = "varlen" if torch.cuda.is_available() and flash_varlen() is not None else "sdpa"
    if choice != "varlen":
        return choice
    if torch.cuda.is_available() and flash_varlen() is None:
        log.warning(
            "training.kernels.attention varlen: this PyTorch has no variable-length flash kernel; "
            "packed examples are attended one at a time with sdpa"
        )
    register_varlen_attention()
    return VARLEN


def register_varlen_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(VARLEN, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, sdpa_mask)  # the mask of the sdpa fallback


def varlen_attention_forward(
    module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs
):
    """transformers attention interface: ``query`` [batch, heads, tokens, dim], key/value with
    ``num_key_value_heads``; returns ([batch, tokens, heads, dim], None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    if cu_seq_lens is None or query.shape[0] != 1 or dropout or not getattr(module, "is_causal", False):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, dim]
    cu_seq_lens = cu_seq_lens.to(device=q.device, dtype=torch.int32)
    out = causal_varlen_attention(q, k, v, cu_seq_lens, int(kwargs["max_length_q"]), scaling)
    return out.unsqueeze(0), None


def causal_varlen_attention(q, k, v, cu_seq_lens, max_len: int, scale: float | None):
    """Causal attention within each sequence ``cu_seq_lens[i]:cu_seq_lens[i+1]`` of the token
    dimension. q [tokens, heads, dim]; k, v [tokens, kv_heads, dim] (grouped-query attention)."""
    kernel = flash_varlen() if q.is_cuda and q.dtype in _flash_dtypes() else None
    if kernel is not None:
        return kernel(q, k, v, cu_seq_lens, max_len, scale)
    return per_sequence_attention(q, k, v, cu_seq_lens, scale)


def per_sequence_attention(q, k, v, cu_seq_lens, scale: float | None):
    """The reference: sdpa over each sequence on its own (any device and dtype)."""
    import torch
    import torch.nn.functional as F

    bounds = cu_seq_lens.tolist()
    outs = []
    for start, end in itertools.pairwise(bounds):
        qs, ks, vs = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        outs.append(
            F.scaled_dot_product_attention(
                qs, ks, vs, is_causal=True, scale=scale, enable_gqa=ks.shape[1] != qs.shape[1]
            )[0].transpose(0, 1)
        )
    return torch.cat(outs)


def _flash_dtypes():
    import torch

    return (torch.float16, torch.bfloat16)


@lru_cache(maxsize=1)
def flash_varlen():
    """PyTorch's variable-length flash attention as ``f(q, k, v, cu_seq_lens, max_len, scale)``, or None.

    ``torch.nn.attention.varlen.varlen_attn`` (PyTorch 2.10+; causal through ``is_causal`` or, later,
    ``window_size=(-1, 0)``), else the ``aten._flash_attention_forward`` op it is built on."""
    import torch

    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        varlen_attn = None
    if varlen_attn is not None:
        params = inspect.signature(varlen_attn).parameters
        causal = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
        gqa = "enable_gqa" in params

        def run(q, k, v, cu, max_len, scale):
            if not gqa and k.shape[1] != q.shape[1]:
                k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
            extra = {"enable_gqa": True} if gqa and k.shape[1] != q.shape[1] else {}
            return varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scale, **causal, **extra)

        return run
    op = getattr(torch.ops.aten, "_flash_attention_forward", None)
    if op is None:
        return None

    def run_op(q, k, v, cu, max_len, scale):
        return op(q, k, v, cu, cu, max_len, max_len, 0.0, True, False, scale=scale)[0]

    return run_op


# --- Liger ---------------------------------------------------------------------------------------

LIGER_KERNELS = {
    "rope": True,
    "rms_norm": True,
    "swiglu": True,
    "cross_entropy": False,
    "fused_linear_cross_entropy": False,
}
"""RMSNorm, RoPE and SwiGLU; not the loss: TRL's trainers already compute the LM head and the loss
in chunks without materializing the logits."""


def apply_liger(model) -> bool:
    """Patch ``model`` (before PEFT wraps it) with Liger's kernels; False where there are none."""
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError as exc:
        log.warning("training.kernels.liger: liger-kernel is not importable here (%s); training without it", exc)
        return False
    model_type = getattr(model.config, "model_type", None)
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if apply is None:
        log.info("training.kernels.liger: Liger has no kernels for %r models", model_type)
        return False
    params = inspect.signature(apply).parameters
    apply(model=model, **{k: v for k, v in LIGER_KERNELS.items() if k in params})
    return True
