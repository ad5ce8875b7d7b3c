"""`x @ W.T + b` on the CPU as one plain GEMM, the bias carried by an extra input column.

`torch.addmm(b, x, W.T)` first broadcasts the bias into the whole `[batch, d_sae]` output and then runs
the GEMM with beta=1: one extra pass over the largest tensor of a TopK step. Appending a column of ones
to `x` and the bias as a column of `W` gives the same product with the bias summed inside the GEMM; the
inner size is padded with zeros to a multiple of 32 (AMX bf16 tiles and AVX-512 blocks take K in such
steps). Measured on one thread at 4096 x 576 x 9216: bf16 59 -> 45 ms (the screen's matmul),
`benchmarks/train_profile.py` for the step.

Only the CPU path uses it (cuBLAS fuses the bias already), and only where `scratch` hands out reusable
buffers (no autograd): the augmented copies of `W` and `x` and the output live there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saekit.sae.scratch import scratch

K_STEP = 32


def _augmented(name: str, a_RD: Tensor, last: Tensor | float, dtype: torch.dtype) -> Tensor | None:
    """`[a | last | 0 ...]` with the inner size rounded up to `K_STEP`, in `dtype`, in a scratch buffer."""
    R, D = a_RD.shape
    kp = -(-(D + 1) // K_STEP) * K_STEP
    out = scratch(name, (R, kp), dtype, a_RD.device)
    if out is None:
        return None
    out[:, :D].copy_(a_RD)
    out[:, D] = last
    out[:, D + 1 :].zero_()
    return out


def biased_gemm(name: str, x_BD: Tensor, W_FD: Tensor, b_F: Tensor, dtype: torch.dtype) -> Tensor:
    """`(x @ W.T + b)` in `dtype`, `[batch, F]`; on the CPU in this thread's `scratch` buffer `name`."""
    xa = _augmented(f"{name}.x", x_BD, 1.0, dtype) if x_BD.device.type == "cpu" else None
    Wa = _augmented(f"{name}.w", W_FD, b_F, dtype) if xa is not None else None
    if xa is None or Wa is None:
        return torch.addmm(b_F.to(dtype), x_BD.to(dtype), W_FD.to(dtype).T)
    return torch.mm(xa, Wa.T, out=scratch(name, (x_BD.shape[0], W_FD.shape[0]), dtype, x_BD.device))
