import pytest
import torch
from numerics import assert_close_scaled

from saekit.errors import ShapeError
from saekit.sae import SAEConfig, build


def _sae():
    return build(SAEConfig(d_in=8, d_sae=16, arch="topk", k=3), seed=0)


def test_decode_sparse_matches_dense_decode():
    sae = _sae()
    x = torch.randn(5, 8)
    vals, idx = sae.encode_sparse(x)
    with torch.no_grad():  # scatter the (value, index) pairs into dense rows and apply the decoder by hand
        dense = torch.zeros(5, 16).scatter_(1, idx, vals)
        ref = dense @ sae.W_dec + sae.b_dec
        assert_close_scaled(sae.decode_sparse(vals, idx), ref, terms=16, msg="decode")
        assert torch.equal(dense, sae.encode(x))  # the sparse and dense forms hold the same latents


def test_decode_sparse_rejects_out_of_range_indices():
    sae = _sae()
    with pytest.raises(ShapeError, match="d_sae=16"):
        sae.decode_sparse(torch.ones(2, 3), torch.tensor([[0, 1, 16], [0, 1, 2]]))


def test_decode_sparse_rejects_mismatched_shapes():
    sae = _sae()
    with pytest.raises(ShapeError, match="same shape"):
        sae.decode_sparse(torch.ones(2, 3), torch.zeros(2, 4, dtype=torch.long))


def test_decode_sparse_layer_norm_skip_matches_hand_formula():
    """A layer-norm + skip TopK SAE: the sparse decode must restore each row's mean/std and add x W_skip,
    written out here by hand (not through the SAE's helpers)."""
    torch.manual_seed(0)
    cfg = SAEConfig(d_in=8, d_sae=16, arch="topk", k=3, normalization="layer_norm", skip_connection=True)
    sae = build(cfg, seed=0)
    with torch.no_grad():
        sae.W_skip.copy_(0.1 * torch.randn(8, 8))
        sae.b_dec.copy_(0.2 * torch.randn(8))
    x = 3.0 + 2.0 * torch.randn(5, 8)
    mu = x.mean(-1, keepdim=True)
    std = (x - mu).std(-1, keepdim=True)
    x_n = (x - mu) / (std + 1e-5)
    pre = (x_n - sae.b_dec) @ sae.W_enc + sae.b_enc
    vals, idx = pre.topk(3, dim=-1)
    dense = torch.zeros(5, 16).scatter_(-1, idx, vals.relu())
    expected = (dense @ sae.W_dec + sae.b_dec) * std + mu + x @ sae.W_skip
    s_vals, s_idx = sae.encode_sparse(x)
    got = sae.decode_sparse(s_vals, s_idx, x).detach()
    assert_close_scaled(got, expected, terms=16 + 8, msg="layer-norm + skip decode")
    with pytest.raises(ShapeError, match="input row"):
        sae.decode_sparse(s_vals, s_idx)
