"""TopK fast path: one autograd Function whose backward only touches the active latents.

A dense TopK SAE pays for three `[batch, d_in] x [d_in, d_sae]` matmuls per step: the encoder forward,
the encoder weight gradient and the input gradient (needed for `b_dec`). Only k (plus aux-k) entries of
the pre-activation gradient are non-zero, so here:

- forward: one dense matmul, `topk`, and a sparse decode (`embedding_bag` over the k chosen rows);
- the per-slot gradient `g[b, s] = grad_recon[b] . W_dec[idx[b, s]]` is a gather-dot (chunked bmm);
- `grad W_enc[:, j] = sum_{(b,s): idx=j} g[b,s] * (x[b] - b_dec)` and
  `grad W_dec[j] = sum_{(b,s): idx=j} value[b,s] * grad_recon[b]` are "transposed" embedding bags:
  sort the (row, slot) pairs by latent once, then one `embedding_bag` per weight with a bag per latent;
- `grad b_dec` through the encoder is `-W_enc @ grad b_enc` (a matrix-vector product), because the
  centring is shared by every latent; no `[batch, d_in]` input gradient is formed unless asked for.

Cost is O(batch * (k + k_aux) * d_in) instead of O(batch * d_sae * d_in) for everything but the
forward matmul. Numerics: fp32 sums in a different order from the dense reference, so results agree to
float rounding (~1e-6 relative), not bitwise; the kernel itself is deterministic on CPU.

Devices: every op here (addmm, topk, sort, bincount, cumsum, index_add_, embedding_bag with
per-sample weights, bmm) has CPU and CUDA kernels; the one private ATen op is probed per device and
replaced by public ops where it does not run (`_private_op_works`).

`matmul_dtype=torch.bfloat16` runs only the encoder matmul in bf16 (weights cast per step from fp32
masters); everything else stays in the parameter dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from saekit.sae.screened_topk import LatentSelector, select_latents

_CHUNK_ROWS = 512


class TopKForwardOut(NamedTuple):
    """Outputs of `topk_forward` (normalised space)."""

    recon_BD: Tensor
    """`sum_k values * W_dec[idx] + b_dec`, `[batch, d_in]`."""
    values_BK: Tensor
    """ReLU'd top-k pre-activations `[batch, k]`."""
    indices_BK: Tensor
    """Their latent indices `[batch, k]` (int64)."""
    aux_recon_BD: Tensor | None
    """Reconstruction from the top-`k_aux` dead latents (no bias), or None without a dead mask."""
    aux_values_BA: Tensor | None
    aux_indices_BA: Tensor | None


def _gather_dot(grad_BD: Tensor, W_FD: Tensor, idx_BS: Tensor) -> Tensor:
    """`out[b, s] = grad[b] . W[idx[b, s]]` without materialising the gathered `[batch, S, d]` rows.

    Uses ATen's embedding-bag per-sample-weight backward (a fused gather-dot loop, ~5x faster than
    gather + bmm here) where `_private_op_works` says it runs on this device and dtype; else chunked
    gather + bmm, which only needs public ops that every backend has.
    """
    if grad_BD.dtype == W_FD.dtype and _private_op_works(grad_BD.device, grad_BD.dtype):
        return _gather_dot_private(grad_BD, W_FD, idx_BS)
    return _gather_dot_bmm(grad_BD, W_FD, idx_BS)


def row_dots(a_RD: Tensor, b_RD: Tensor) -> Tensor:
    """`out[r] = a[r] . b[r]`: the fused gather-dot loop with the identity gather (~2x faster than
    `torch.linalg.vecdot` on CPU, which the decoder-gradient projection pays every step)."""
    if a_RD.dtype != b_RD.dtype or a_RD.device.type != "cpu":
        return torch.linalg.vecdot(a_RD, b_RD)
    rows = torch.arange(a_RD.shape[0], device=a_RD.device)[:, None]
    return _gather_dot(a_RD, b_RD, rows).view(-1)


def gather_dot_pairs(src_RD: Tensor, W_FD: Tensor, rows_N: Tensor, lat_N: Tensor) -> Tensor:
    """`out[n] = src[rows[n]] . W[lat[n]]` for arbitrary (row, latent) pairs.

    Given pairs sorted by latent, consecutive dots reuse one row of `W` from L1/L2 instead of fetching
    rows in random order: the backward's per-slot gradient costs ~1/3 of the row-ordered gather here.
    """
    if src_RD.dtype == W_FD.dtype and _private_op_works(src_RD.device, src_RD.dtype):
        return _pairs_private(src_RD, W_FD, rows_N, lat_N)
    out = src_RD.new_empty(rows_N.shape[0], dtype=torch.promote_types(src_RD.dtype, W_FD.dtype))
    step = _CHUNK_ROWS * 32
    for lo in range(0, rows_N.shape[0], step):
        a = src_RD.index_select(0, rows_N[lo : lo + step])
        b = W_FD.index_select(0, lat_N[lo : lo + step])
        out[lo : lo + step] = torch.linalg.vecdot(a.to(out.dtype), b.to(out.dtype))
    return out


def _pairs_private(src_RD: Tensor, W_FD: Tensor, rows_N: Tensor, lat_N: Tensor) -> Tensor:
    op = torch.ops.aten._embedding_bag_per_sample_weights_backward
    offsets = rows_N.new_zeros(1)  # not read when offset2bag (here: the rows) is given
    return op(src_RD.contiguous(), W_FD, lat_N, offsets, rows_N, 0, -1)


def _gather_dot_private(grad_BD: Tensor, W_FD: Tensor, idx_BS: Tensor) -> Tensor:
    """The row-ordered gather-dot: the pairs (b, idx[b, s]) in row order."""
    B, S = idx_BS.shape
    rows = torch.arange(B, device=idx_BS.device).repeat_interleave(S)
    return _pairs_private(grad_BD, W_FD, rows, idx_BS.flatten()).view(B, S)


def _gather_dot_bmm(grad_BD: Tensor, W_FD: Tensor, idx_BS: Tensor) -> Tensor:
    B, S = idx_BS.shape
    out = grad_BD.new_empty(B, S)
    step = max(1, _CHUNK_ROWS * 32 // max(S, 1))
    for lo in range(0, B, step):
        hi = min(lo + step, B)
        rows = W_FD.index_select(0, idx_BS[lo:hi].flatten()).view(hi - lo, S, -1)
        out[lo:hi] = torch.bmm(rows, grad_BD[lo:hi, :, None].to(rows.dtype)).squeeze(-1)
    return out


#: (device type, dtype) -> whether the private ATen op ran and agreed with the public-op reference there
_PRIVATE_OP_OK: dict[tuple[str, torch.dtype], bool] = {}


def _private_op_works(device: torch.device, dtype: torch.dtype) -> bool:
    """Probe the private op once per device type and dtype on a tiny input against `_gather_dot_bmm`.

    A private op may be absent from a build, lack a kernel for a backend (NotImplementedError on CUDA,
    MPS, ...) or change its signature between releases; any of these makes the probe fail, and the
    public-op path is used from then on, so a missing kernel costs speed, never correctness.
    """
    key = (device.type, dtype)
    if key not in _PRIVATE_OP_OK:
        gen = torch.Generator().manual_seed(0)
        g = torch.randn(3, 8, generator=gen).to(device=device, dtype=dtype)
        W = torch.randn(5, 8, generator=gen).to(device=device, dtype=dtype)
        idx = torch.tensor([[0, 4], [2, 2], [1, 3]], device=device)
        try:
            # pairs out of row order: what gather_dot_pairs passes; the row-ordered form is a special case
            perm = torch.tensor([5, 0, 3, 1, 4, 2], device=device)
            rows = torch.arange(3, device=device).repeat_interleave(2)[perm]
            got = _pairs_private(g, W, rows, idx.flatten()[perm])
            ref = _gather_dot_bmm(g, W, idx).flatten()[perm]
            ok = bool(torch.allclose(got, ref, rtol=1e-2, atol=1e-2))
        except Exception:  # noqa: BLE001 - missing op/kernel/signature all mean "use the public ops"
            ok = False
        _PRIVATE_OP_OK[key] = ok
    return _PRIVATE_OP_OK[key]


def _bags_by_latent(lat_N: Tensor, n_latents: int) -> tuple[Tensor, Tensor]:
    """Stable order of entries sorted by latent, and the bag offsets `[n_latents]` for embedding_bag."""
    # int32 keys sort several times faster than int64 on CPU; the stable order makes sums deterministic
    key = lat_N.to(torch.int32) if n_latents < 2**31 else lat_N
    order = torch.sort(key, stable=True).indices
    counts = torch.bincount(lat_N, minlength=n_latents)
    offsets = torch.zeros(n_latents, dtype=torch.int64, device=lat_N.device)
    torch.cumsum(counts[:-1], 0, out=offsets[1:])
    return order, offsets


def _scatter_rows(src_RD: Tensor, rows_N: Tensor, weights_N: Tensor, offsets_F: Tensor) -> Tensor:
    """`out[j] = sum_{n in bag j} weights[n] * src[rows[n]]` -> `[n_latents, d]` (a transposed embedding
    bag)."""
    return F.embedding_bag(
        rows_N, src_RD, offsets_F, mode="sum", per_sample_weights=weights_N.to(src_RD.dtype)
    )


class _TopKFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_BD, W_enc_DF, b_enc_F, W_dec_FD, b_dec_D, k, dead_F, k_aux, matmul_dtype, centre):
        x_c = x_BD - b_dec_D if centre else x_BD
        ctx.centre = centre
        # the encoder matmul + top-k (exact, autocast dtype, or a screen): saekit.sae.screened_topk
        vals, idx, a_vals, a_idx = select_latents(x_c, W_enc_DF, b_enc_F, k, dead_F, k_aux, matmul_dtype)
        recon = F.embedding_bag(idx, W_dec_FD, per_sample_weights=vals, mode="sum") + b_dec_D
        if a_idx.shape[1] > 0:
            a_recon = F.embedding_bag(a_idx, W_dec_FD, per_sample_weights=a_vals, mode="sum")
        else:
            a_recon = torch.zeros_like(recon)
        ctx.save_for_backward(x_c, W_enc_DF, W_dec_FD, vals, idx, a_vals, a_idx)
        ctx.mark_non_differentiable(idx, a_idx)
        return recon, vals, idx, a_recon, a_vals, a_idx

    @staticmethod
    def backward(ctx, g_recon, g_vals, _g_idx, g_arecon, g_avals, _g_aidx):
        x_c, W_enc, W_dec, vals, idx, a_vals, a_idx = ctx.saved_tensors
        B = x_c.shape[0]
        n_lat = W_dec.shape[0]
        has_aux = a_idx.shape[1] > 0
        if g_recon is None:
            g_recon = x_c.new_zeros(B, W_dec.shape[1])
        S = idx.shape[1] + a_idx.shape[1]
        row = torch.arange(B, device=x_c.device).repeat_interleave(S)
        if has_aux:
            if g_arecon is None:
                g_arecon = torch.zeros_like(g_recon)
            lat = torch.cat([idx, a_idx], 1).flatten()
            v_all = torch.cat([vals, a_vals], 1).flatten()
            is_aux = torch.cat([torch.zeros_like(idx), torch.ones_like(a_idx)], 1).flatten()
            dec_src = torch.cat([g_recon, g_arecon], 0)
            dec_row = row + B * is_aux
            direct = None
            if g_vals is not None or g_avals is not None:
                gv = g_vals if g_vals is not None else torch.zeros_like(vals)
                ga = g_avals if g_avals is not None else torch.zeros_like(a_vals)
                direct = torch.cat([gv, ga], 1).flatten()
        else:
            lat, v_all, dec_src, dec_row = idx.flatten(), vals.flatten(), g_recon, row
            direct = g_vals.flatten() if g_vals is not None else None
        # every (row, slot) pair in latent order: the gathers below then walk W a row at a time
        order, offsets = _bags_by_latent(lat, n_lat)
        lat_s, v_s, dec_row_s = lat[order], v_all[order], dec_row[order]
        # per-slot gradient of the latent values (through the decoder, plus any direct use), zero where
        # the ReLU clipped the value
        g_sorted = gather_dot_pairs(dec_src, W_dec, dec_row_s, lat_s)
        if direct is not None:
            g_sorted = g_sorted + direct[order]
        g_sorted = g_sorted * (v_s > 0)

        grad_x = grad_W_enc = grad_b_enc = grad_W_dec = grad_b_dec = None
        need_x, need_We, need_be, need_Wd, need_bd = ctx.needs_input_grad[:5]
        # (on CUDA index_add_ sums with atomics, so this one gradient varies run to run at rounding level)
        grad_b_enc_F = torch.zeros(n_lat, dtype=x_c.dtype, device=x_c.device).index_add_(0, lat_s, g_sorted)
        if need_be:
            grad_b_enc = grad_b_enc_F
        if need_We:
            grad_W_enc = _scatter_rows(x_c, row[order], g_sorted, offsets).T
        if need_Wd:
            grad_W_dec = _scatter_rows(dec_src, dec_row_s, v_s, offsets)
        if need_x or need_bd:
            if need_x:
                # only when the caller wants input gradients: one more sparse product
                g_all = torch.empty_like(g_sorted)
                g_all[order] = g_sorted
                grad_x = F.embedding_bag(
                    idx if not has_aux else torch.cat([idx, a_idx], 1),
                    W_enc.T.contiguous(),
                    per_sample_weights=g_all.view(B, -1),
                    mode="sum",
                )
            if need_bd:
                grad_b_dec = _grad_b_dec(g_recon, W_enc, grad_b_enc_F, ctx.centre)
        return grad_x, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, None, None, None, None, None


def _grad_b_dec(g_recon_BD: Tensor, W_enc_DF: Tensor, grad_b_enc_F: Tensor, centre: bool) -> Tensor:
    """b_dec's gradient: through the decoder output, and (when the input is centred on b_dec, i.e. not in
    a transcoder) back through the encoder, where it acts as minus an input shift."""
    grad = g_recon_BD.sum(0)
    return grad - W_enc_DF @ grad_b_enc_F if centre else grad


def topk_forward(
    x_BD: Tensor,
    W_enc_DF: Tensor,
    b_enc_F: Tensor,
    W_dec_FD: Tensor,
    b_dec_D: Tensor,
    k: int,
    dead_mask_F: Tensor | None = None,
    k_aux: int = 0,
    matmul_dtype: torch.dtype | LatentSelector | None = None,
    centre: bool = True,
) -> TopKForwardOut:
    """TopK encode + sparse decode (+ aux-k selection among dead latents) with the sparse backward.

    `x_BD` is the normalised input; returns values after ReLU. Gradients flow to every tensor argument.
    `matmul_dtype` may also be a selector (`saekit.sae.screened.Screener`) that picks the latents itself.
    `centre=False` (transcoders) encodes `x` itself instead of `x - b_dec`; `W_dec [d_sae, d_out]` and
    `b_dec [d_out]` may then have another width than `x`.
    """
    dead = dead_mask_F.to(x_BD.device) if dead_mask_F is not None and k_aux > 0 else None
    recon, vals, idx, a_recon, a_vals, a_idx = _TopKFunction.apply(
        x_BD, W_enc_DF, b_enc_F, W_dec_FD, b_dec_D, int(k), dead, int(k_aux), matmul_dtype, bool(centre)
    )
    if a_idx.shape[1] == 0:
        return TopKForwardOut(recon, vals, idx, None, None, None)
    return TopKForwardOut(recon, vals, idx, a_recon, a_vals, a_idx)
