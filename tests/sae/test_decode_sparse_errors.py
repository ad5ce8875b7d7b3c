import pytest
import torch

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
        assert torch.allclose(sae.decode_sparse(vals, idx), dense @ sae.W_dec + sae.b_dec, atol=1e-5)
        assert torch.equal(dense, sae.encode(x))  # the sparse and dense forms hold the same latents


def test_decode_sparse_rejects_out_of_range_indices():
    sae = _sae()
    with pytest.raises(ShapeError, match="d_sae=16"):
        sae.decode_sparse(torch.ones(2, 3), torch.tensor([[0, 1, 16], [0, 1, 2]]))


def test_decode_sparse_rejects_mismatched_shapes():
    sae = _sae()
    with pytest.raises(ShapeError, match="same shape"):
        sae.decode_sparse(torch.ones(2, 3), torch.zeros(2, 4, dtype=torch.long))
