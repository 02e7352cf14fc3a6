"""Activation offloading (``training.kernels.offload``): what the forward pass saves for the
backward pass outside the checkpointed layers (with gradient checkpointing, each layer's input:
2 bytes x hidden size per token and layer) goes to page-locked host memory on a side CUDA stream,
and comes back during the backward pass, the next one fetched while the current layer computes.

The same idea as torchtune's ``OffloadActivations`` (which TRL ports), written here for two
reasons: PyTorch's pinned-memory cache rounds every block up to a power of two (a 1.07 GB layer
input would take 2 GB of page-locked memory), so tensors are copied in pieces of ``PIECE_BYTES``;
and with gradient checkpointing the saved tensors are consumed in reverse order, so one tensor
ahead is prefetched instead of tracking autograd nodes. Parameters, small tensors, tensors that
are not contiguous and whatever is saved during the backward pass itself (the tiled MLP's
recomputed tiles) stay where they are. The values are copied bit for bit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger("finetune_trainer")

PIECE_BYTES = 32 << 20
"""Page-locked pieces: a power of two, so PyTorch's host cache wastes nothing but a tail."""
MIN_BYTES = 1 << 20


@dataclass
class Offloaded:
    """A saved tensor's bytes on the host, in pieces, and (while fetched) its device copy."""

    shape: torch.Size
    dtype: torch.dtype
    device: torch.device
    pieces: list[torch.Tensor]
    stored: Any = None
    """The event after which ``pieces`` hold the data (CUDA)."""
    fetched: Any = None
    device_copy: torch.Tensor | None = field(default=None, repr=False)
    consumed: bool = False
    """Unpacked once: never prefetched again."""


class ActivationOffload(torch.autograd.graph.saved_tensors_hooks):
    """Enter around a training step (forward and backward). ``device_type`` "cpu" copies CPU
    tensors to other CPU tensors (for tests: the same bookkeeping without a GPU)."""

    def __init__(self, model, device_type: str = "cuda", min_bytes: int = MIN_BYTES):
        self.device_type = device_type
        self.min_bytes = min_bytes
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.stream = torch.cuda.Stream() if device_type == "cuda" else None
        self.saved: list[Offloaded] = []
        self.offloaded_bytes = 0
        super().__init__(self._pack, self._unpack)

    def __enter__(self):
        self.saved = []  # the previous step's host pieces go back to PyTorch's pinned cache
        self.offloaded_bytes = 0
        return super().__enter__()

    def _wanted(self, t: torch.Tensor) -> bool:
        return (
            torch._C._current_graph_task_id() == -1  # not saved by the backward pass itself
            and t.device.type == self.device_type
            and t.numel() * t.element_size() >= self.min_bytes
            and not isinstance(t, torch.nn.Parameter)
            and t.is_contiguous()
            and t.untyped_storage().data_ptr() not in self.params
        )

    def _pack(self, t: torch.Tensor):
        if not self._wanted(t):
            return t
        flat = t.detach().reshape(-1)
        step = max(1, PIECE_BYTES // t.element_size())
        pinned = self.stream is not None
        rec = Offloaded(t.shape, t.dtype, t.device, [])
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream())
        with _on(self.stream):
            for start in range(0, flat.numel(), step):
                part = flat[start : start + step]
                host = torch.empty(part.numel(), dtype=t.dtype, pin_memory=pinned)
                host.copy_(part, non_blocking=pinned)
                rec.pieces.append(host)
        if self.stream is not None:
            flat.record_stream(self.stream)  # the allocator keeps the memory until the copy is done
            rec.stored = self.stream.record_event()
        self.saved.append(rec)
        self.offloaded_bytes += flat.numel() * t.element_size()
        return rec

    def _unpack(self, rec):
        if isinstance(rec, torch.Tensor):
            return rec
        if rec.device_copy is None:
            self._fetch(rec)
        if rec.fetched is not None:
            torch.cuda.current_stream().wait_event(rec.fetched)
        out, rec.device_copy, rec.fetched, rec.consumed = rec.device_copy, None, None, True
        self._prefetch_before(rec)
        return out

    def _prefetch_before(self, rec: Offloaded) -> None:
        """Start bringing back the tensor saved just before ``rec``: the next one the backward needs."""
        index = next((i for i, r in enumerate(self.saved) if r is rec), 0)
        for earlier in reversed(self.saved[:index]):
            if earlier.device_copy is None and not earlier.consumed:
                self._fetch(earlier)
                return

    def _fetch(self, rec: Offloaded) -> None:
        out = torch.empty(rec.shape, dtype=rec.dtype, device=rec.device)
        flat = out.view(-1)
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream())
            self.stream.wait_event(rec.stored)
        start = 0
        with _on(self.stream):
            for host in rec.pieces:
                flat[start : start + host.numel()].copy_(host, non_blocking=self.stream is not None)
                start += host.numel()
        rec.device_copy = out
        rec.fetched = self.stream.record_event() if self.stream is not None else None


def _on(stream):
    import contextlib

    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


def install(trainer, model, device_type: str = "cuda") -> ActivationOffload:
    """Run every training step of ``trainer`` (forward and backward) under activation offloading."""
    hooks = ActivationOffload(model, device_type)
    step = trainer.training_step

    def offloaded_step(*args, **kwargs):
        with hooks:
            return step(*args, **kwargs)

    trainer.training_step = offloaded_step
    return hooks
