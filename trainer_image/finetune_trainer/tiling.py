"""Tiled MLP (``training.kernels.tiledMlp``): each decoder layer's feed-forward block runs over
``tileTokens`` tokens at a time.

A gated MLP keeps gate, up and act(gate) for its backward: 3 x 2 bytes x intermediate size per
token (84 KiB a token on an 8B Llama, more than all the rest of the layer). Tiled, the forward
keeps only its input; the backward recomputes one tile at a time and backpropagates through it,
so those intermediates exist for one tile, never for the whole sequence. The function is the
same (the same ops on the same rows; the LoRA gradients of the tiles are summed in fp32); the
cost is one more forward pass of the MLP. Dropout in the MLP's LoRA branches draws the same
masks in the recomputation (the random state is restored, as gradient checkpointing does).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import torch

log = logging.getLogger("finetune_trainer")

MLP_NAME = re.compile(r"(^|\.)layers\.\d+\.mlp$")


def tile_mlps(model, tile_tokens: int) -> int:
    """Make every decoder layer's ``mlp`` tile sequences longer than ``tile_tokens``; returns how many."""
    n = 0
    for name, module in model.named_modules():
        if MLP_NAME.search(name) and not hasattr(module, "_untiled_forward"):
            module._untiled_forward = module.forward
            module.forward = _tiled_forward(module, module._untiled_forward, tile_tokens)
            n += 1
    return n


def untile_mlps(model) -> int:
    """Undo ``tile_mlps``; returns how many MLPs it restored."""
    n = 0
    for module in model.modules():
        if hasattr(module, "_untiled_forward"):
            module.forward = module._untiled_forward
            del module._untiled_forward
            n += 1
    return n


def _tiled_forward(module, forward: Callable, tile: int) -> Callable:
    def tiled(x, *args, **kwargs):
        if args or kwargs or x.dim() < 2 or x.shape[-2] <= tile:
            return forward(x, *args, **kwargs)
        params = tuple(p for p in module.parameters() if p.requires_grad)
        return TiledMLP.apply(x, forward, tile, *params)

    return tiled


class TiledMLP(torch.autograd.Function):
    """``forward(x)`` over tiles of ``tile`` rows (dim -2); ``params``: the trainable weights it
    uses, inputs here so that autograd delivers their gradients."""

    @staticmethod
    def forward(ctx, x, forward, tile, *params):
        ctx.forward, ctx.tile = forward, tile
        ctx.device = x.device.type
        ctx.autocast = (torch.is_autocast_enabled(ctx.device), torch.get_autocast_dtype(ctx.device))
        ctx.rng = _rng_state(x.device)
        ctx.save_for_backward(x, *params)
        with torch.no_grad():
            return torch.cat([forward(part) for part in x.split(tile, dim=-2)], dim=-2)

    @staticmethod
    def backward(ctx, grad_out):
        x, *params = ctx.saved_tensors
        wants_x = ctx.needs_input_grad[0]
        trained = [p for p, want in zip(params, ctx.needs_input_grad[3:], strict=True) if want]
        grad_x = torch.empty_like(x) if wants_x else None
        sums = [torch.zeros_like(p, dtype=torch.float32) for p in trained]
        enabled, dtype = ctx.autocast
        with (
            torch.random.fork_rng(devices=[x.device] if x.is_cuda else []),
            torch.autocast(ctx.device, dtype=dtype, enabled=enabled),
            torch.enable_grad(),
        ):
            _set_rng_state(x.device, ctx.rng)
            for start in range(0, x.shape[-2], ctx.tile):
                part = x.narrow(-2, start, min(ctx.tile, x.shape[-2] - start)).detach()
                part.requires_grad_(wants_x)
                out = ctx.forward(part)
                wrt = ([part] if wants_x else []) + trained
                grads = torch.autograd.grad(out, wrt, grad_out.narrow(-2, start, part.shape[-2]))
                if wants_x:
                    grad_x.narrow(-2, start, part.shape[-2]).copy_(grads[0])
                for acc, g in zip(sums, grads[1 if wants_x else 0 :], strict=True):
                    acc.add_(g)
        it = iter(s.to(p.dtype) for s, p in zip(sums, trained, strict=True))
        param_grads = [next(it) if want else None for want in ctx.needs_input_grad[3:]]
        return (grad_x, None, None, *param_grads)


def _rng_state(device):
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device, state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
