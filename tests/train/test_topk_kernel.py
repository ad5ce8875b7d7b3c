"""The sparse TopK fast path equals a dense autograd reference: forward values and every gradient."""

from __future__ import annotations

import pytest
import torch
from numerics import assert_close_scaled

from saekit.sae import SAEConfig, build

torch.set_num_threads(1)  # tiny tensors: one thread avoids OpenMP stalls on a loaded machine


def dense_reference(sae, x, dead_mask):
    """Plain dense TopK SAE math with autograd (no custom Function)."""
    x_n = x * sae.input_scale
    pre = (x_n - sae.b_dec) @ sae.W_enc + sae.b_enc
    vals, idx = pre.topk(sae.k, dim=-1)
    lat = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
    recon = lat @ sae.W_dec + sae.b_dec
    recon_l = (recon - x_n).pow(2).sum(-1).mean()
    aux = torch.zeros((), dtype=x.dtype)
    if dead_mask is not None and dead_mask.any():
        k = min(sae.k_aux, int(dead_mask.sum()))
        avals, aidx = pre.masked_fill(~dead_mask, float("-inf")).topk(k, dim=-1)
        alat = torch.zeros_like(pre).scatter(-1, aidx, avals.relu())
        aux = sae.cfg.aux_k_coefficient * (alat @ sae.W_dec - (x_n - recon).detach()).pow(2).sum(-1).mean()
    return recon, recon_l, aux


def grads(sae, loss):
    sae.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in sae.named_parameters()}


@pytest.mark.parametrize("n_dead", [0, 5, 40])
def test_sparse_path_matches_dense_reference(n_dead):
    torch.manual_seed(0)
    cfg = SAEConfig(d_in=24, d_sae=64, arch="topk", k=4, aux_k=6, dtype="float64")
    sae = build(cfg, seed=1)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(std=0.1)
        sae.W_enc.add_(0.1 * torch.randn_like(sae.W_enc))
        sae.input_scale.fill_(0.7)
    x = torch.randn(33, 24, dtype=torch.float64) * 2
    dead = torch.zeros(64, dtype=torch.bool)
    dead[torch.randperm(64)[:n_dead]] = True
    dead_arg = dead if n_dead else None
    out = sae(x, dead_mask=dead_arg)
    g_fast = grads(sae, out.losses.total)
    recon_ref, rl, aux = dense_reference(sae, x, dead_arg)
    g_ref = grads(sae, rl + aux)
    # float64: sums differ only in order, so agreement is at ~1e-12
    torch.testing.assert_close(out.recon, recon_ref / sae.input_scale, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.losses.recon, rl, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.losses.aux, aux, rtol=1e-10, atol=1e-10)
    if n_dead:
        assert out.losses.aux > 0
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-9, atol=1e-10, msg=name)


def test_sparse_path_fp32_tolerance_and_input_grad():
    """fp32: same result to float rounding (rtol 1e-4); gradients w.r.t. the input are also right."""
    torch.manual_seed(3)
    sae = build(SAEConfig(d_in=32, d_sae=128, arch="topk", k=8), seed=0)
    x = torch.randn(50, 32, requires_grad=True)
    out = sae(x)
    (gx_fast,) = torch.autograd.grad(out.losses.total, x)
    _, rl, _ = dense_reference(sae, x, None)
    (gx_ref,) = torch.autograd.grad(rl, x)
    assert_close_scaled(gx_fast, gx_ref, terms=128 + 32, msg="input gradient")


def test_bf16_matmul_close_to_fp32():
    torch.manual_seed(4)
    sae = build(SAEConfig(d_in=32, d_sae=64, arch="topk", k=64), seed=0)  # k = d_sae: same latents
    x = torch.randn(16, 32)
    ref = sae(x).recon
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = sae(x).recon
    assert fast.dtype == torch.float32
    rel = (fast - ref).norm() / ref.norm()
    assert 0 < rel < 2e-2


@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32), (torch.float32, torch.float64)])
def test_gather_dot_pairs_equals_explicit_dots(dtypes):
    """Both the fused ATen path (same dtypes) and the public fallback (mixed): src[rows] . W[lat] per pair,
    for pairs in latent order and in random order, against float64 dots."""
    from saekit.sae.kernels import gather_dot_pairs

    g = torch.Generator().manual_seed(3)
    src = torch.randn(40, 24, generator=g).to(dtypes[0])
    W = torch.randn(300, 24, generator=g).to(dtypes[1])
    rows = torch.randint(0, 40, (1000,), generator=g)
    lat = torch.randint(0, 300, (1000,), generator=g)
    ref = (src.double()[rows] * W.double()[lat]).sum(-1)
    for order in (torch.arange(1000), lat.sort(stable=True).indices):
        got = gather_dot_pairs(src, W, rows[order], lat[order])
        assert got.shape == (1000,)
        scale = float((src.double()[rows] * W.double()[lat]).abs().sum(-1).max())  # of the summands
        assert_close_scaled(got, ref[order], terms=24, scale=scale, dtype=torch.float32, msg=str(dtypes))
