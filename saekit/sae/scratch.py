"""Reused per-step buffers for the `[batch, d_sae]` pre-activations of TopK training on the CPU.

Each training step writes one `[batch, d_sae]` matrix (the encoder's pre-activations, or the screen's
keys) that is read by the top-k and dropped. On the CPU a fresh tensor of that size (150 MB at batch
4096 x 9216) is new memory from the OS every step: the kernel maps and zeroes every page before the GEMM
writes it, which measured 15% of the fp32 encoder matmul and 3x a ReLU over the same matrix
(`benchmarks/train_profile.py`). CUDA's caching allocator already reuses its blocks, so there the buffer
is a plain `torch.empty`.

A buffer is only valid until the next call with the same `name` on the same thread: callers must not
let it escape (the selection code returns top-k values and indices, which are new tensors).
"""

from __future__ import annotations

import threading
from math import prod

import torch
from torch import Tensor

_LOCAL = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor | None:
    """An uninitialised `shape` tensor for an op's `out=`: on the CPU the same memory as the last call with
    this `name`. None (let the op allocate) elsewhere, and under autograd, which refuses `out=`."""
    device = torch.device(device)
    if device.type != "cpu" or torch.is_grad_enabled():
        return None
    buffers: dict[str, Tensor] = _LOCAL.__dict__.setdefault("buffers", {})
    n = prod(shape)
    buf = buffers.get(name)
    if buf is None or buf.dtype != dtype or buf.numel() < n:
        buf = torch.empty(n, dtype=dtype, device=device)
        buffers[name] = buf
    return buf[:n].view(shape)


def release() -> None:
    """Drop this thread's buffers (the end of a training run)."""
    _LOCAL.__dict__.pop("buffers", None)
