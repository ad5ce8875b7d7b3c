"""Latent selection for the TopK fast path: the encoder matmul, the row top-k, the dead-latent top-k.

`select_latents` is what `saekit.sae.kernels` calls in its forward. With a plain (or autocast) encoder it
runs one dense matmul and an exact top-k; with a `saekit.sae.screened.Screener` it hands the selection to
the screen (cheaper matmul, exact re-scoring). Each phase carries a `torch.profiler` label
(`saekit.encoder_matmul`, `saekit.topk`, `saekit.aux_select`) so `benchmarks/train_profile.py` can split
the step; the labels cost nothing measurable when no profiler runs.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor
from torch.profiler import record_function

from saekit.sae import native_topk
from saekit.sae.scratch import scratch


class Selection(NamedTuple):
    """The chosen latents (values after ReLU, exact fp32 pre-activations) and aux-k dead latents."""

    values_BK: Tensor
    indices_BK: Tensor
    aux_values_BA: Tensor
    """`[batch, 0]` when no latent is dead or aux-k is off."""
    aux_indices_BA: Tensor


class LatentSelector(Protocol):
    """What `select_latents` accepts besides a dtype: an object that selects latents itself."""

    def select(
        self, x_c_BD: Tensor, W_enc_DF: Tensor, b_enc_F: Tensor, k: int, dead_F: Tensor | None, k_aux: int
    ) -> Selection: ...


def encoder_matmul(x_c_BD: Tensor, W_enc_DF: Tensor, b_enc_F: Tensor, matmul_dtype=None) -> Tensor:
    """`x_c W_enc + b_enc`, bias fused into the GEMM; optionally in a lower dtype (fp32 result).

    The fp32 result lives in this thread's reused `scratch` buffer: valid until the next call."""
    with record_function("saekit.encoder_matmul"):
        if matmul_dtype is not None and matmul_dtype != W_enc_DF.dtype:
            pre = (x_c_BD.to(matmul_dtype) @ W_enc_DF.to(matmul_dtype)).to(W_enc_DF.dtype)
            return pre.add_(b_enc_F)
        out = scratch("pre", (x_c_BD.shape[0], W_enc_DF.shape[1]), W_enc_DF.dtype, W_enc_DF.device)
        return torch.addmm(b_enc_F, x_c_BD, W_enc_DF, out=out)


def topk_rows(pre_BF: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Row-wise top-k (unsorted), labelled for the profiler; the native CPU kernel where it runs."""
    with record_function("saekit.topk"):
        return native_topk.topk_rows(pre_BF, k)


def dead_topk(pre_BF: Tensor, dead_F: Tensor, k_aux: int) -> tuple[Tensor, Tensor]:
    """Top-`k_aux` pre-activations among dead latents only; indices in the full latent space."""
    with record_function("saekit.aux_select"):
        dead_idx = dead_F.nonzero().flatten()
        k = min(k_aux, dead_idx.numel())
        if dead_idx.numel() * 2 < pre_BF.shape[1]:
            vals, j = native_topk.topk_rows(pre_BF.index_select(1, dead_idx), k)
            return vals, dead_idx[j]
        low = float("-inf") if pre_BF.is_floating_point() else torch.iinfo(pre_BF.dtype).min
        return native_topk.topk_rows(pre_BF.masked_fill(~dead_F, low), k)


def no_aux(values_BK: Tensor, indices_BK: Tensor) -> tuple[Tensor, Tensor]:
    return values_BK.new_zeros(values_BK.shape[0], 0), indices_BK.new_zeros(indices_BK.shape[0], 0)


def select_latents(
    x_c_BD: Tensor,
    W_enc_DF: Tensor,
    b_enc_F: Tensor,
    k: int,
    dead_F: Tensor | None,
    k_aux: int,
    encoder: torch.dtype | LatentSelector | None = None,
) -> Selection:
    """Top-k latents of `x_c W_enc + b_enc` (and the top-`k_aux` dead ones when `dead_F` has any).

    `encoder`: None (fp32 matmul), a dtype (the matmul in that dtype) or a selector with `.select`.
    """
    if encoder is not None and hasattr(encoder, "select"):
        return encoder.select(x_c_BD, W_enc_DF, b_enc_F, k, dead_F, k_aux)
    pre = encoder_matmul(x_c_BD, W_enc_DF, b_enc_F, encoder)
    vals, idx = topk_rows(pre, k)
    vals = vals.relu_()
    if dead_F is not None and k_aux > 0 and bool(dead_F.any()):
        a_vals, a_idx = dead_topk(pre, dead_F, k_aux)
        return Selection(vals, idx, a_vals.relu_(), a_idx)
    return Selection(vals, idx, *no_aux(vals, idx))
