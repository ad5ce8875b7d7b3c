"""Conditioning-level edits (the gytdau recipe) against hand-computed values from the SAE's weights.

For a native SAE the decoder is affine, `decode(f) = (f W_dec + b_dec) / input_scale`, so setting
latent j from f_j to s with the error kept must move the embedding by exactly `(s − f_j) W_dec_j /
input_scale`, and adding s by `s W_dec_j / input_scale`; those are the references here, computed from
the weights, not from encode/decode."""

from __future__ import annotations

import pytest
import torch

from saekit.errors import ShapeError, SteeringError
from saekit.sae import SAEConfig, build
from saekit.steer.image.conditioning import edit_embedding


@pytest.fixture(params=["topk", "relu"])
def sae(request):
    kw = {"k": 8} if request.param == "topk" else {}
    s = build(SAEConfig(d_in=24, d_sae=96, arch=request.param, **kw), seed=3).eval()
    s.input_scale.fill_(0.37)  # a non-trivial normalisation, folded into the reference below
    return s


def _embeds(n=3, d=24, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 4


def test_noop_edits_return_the_embedding_bit_for_bit(sae):
    e = _embeds()
    f = sae.encode(e)
    j = [int(f[0].argmax()), 5]
    assert torch.equal(edit_embedding(e, sae, j), e)  # set to the current values
    assert torch.equal(edit_embedding(e, sae, j, f[:, j]), e)  # ... given explicitly
    assert torch.equal(edit_embedding(e, sae, j, 0.0, mode="add"), e)
    # dtype and device follow the input, and a bf16 input comes back unchanged too
    e16 = e.to(torch.bfloat16)
    out16 = edit_embedding(e16, sae, j)
    assert out16.dtype == torch.bfloat16 and torch.equal(out16, e16)


def test_set_moves_along_the_decoder_row_by_the_latent_change(sae):
    e = _embeds()
    j, s = 7, 40.0
    f_j = sae.encode(e)[:, j]
    got = edit_embedding(e, sae, [j], s)
    row = sae.W_dec[j].detach() / 0.37
    torch.testing.assert_close(got - e, (s - f_j)[:, None] * row, rtol=1e-5, atol=1e-4)
    add = edit_embedding(e, sae, [j], 2.5, mode="add")
    torch.testing.assert_close(add - e, 2.5 * row.expand_as(e), rtol=1e-5, atol=1e-4)


def test_without_the_error_term_it_is_the_bare_reconstruction(sae):
    e = _embeds(1)
    f = sae.encode(e)
    f[:, 11] = 9.0
    ref = (f @ sae.W_dec.detach() + sae.b_dec.detach()) / 0.37
    torch.testing.assert_close(edit_embedding(e, sae, [11], 9.0, keep_error=False), ref, rtol=1e-5, atol=1e-4)


def test_several_features_and_per_row_values(sae):
    e = _embeds(2)
    f = sae.encode(e)
    vals = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    got = edit_embedding(e, sae, [2, 9], vals)
    W = sae.W_dec.detach()[[2, 9]] / 0.37
    torch.testing.assert_close(got - e, (vals - f[:, [2, 9]]) @ W, rtol=1e-5, atol=1e-4)


def test_refusals_name_the_problem(sae):
    with pytest.raises(ShapeError, match=r"size 32 but the SAE has d_in=24"):
        edit_embedding(torch.zeros(1, 32), sae, [0], 1.0)
    with pytest.raises(SteeringError, match="out of range"):
        edit_embedding(_embeds(), sae, [96], 1.0)
    with pytest.raises(SteeringError, match="duplicates"):
        edit_embedding(_embeds(), sae, [1, 1], 1.0)
    with pytest.raises(SteeringError, match="do not broadcast"):
        edit_embedding(_embeds(), sae, [1, 2], torch.ones(3))
    with pytest.raises(SteeringError, match="unknown conditioning edit"):
        edit_embedding(_embeds(), sae, [1], 1.0, mode="scale")


class _NonAffine(torch.nn.Module):
    """An SAE-shaped object whose decoder is not affine (like per-row normalised or foreign SAEs)."""

    d_in, d_sae, dtype, device = 4, 6, torch.float32, torch.device("cpu")

    def encode(self, x):
        return torch.relu(x @ torch.ones(4, 6) * 0.3 - 0.1)

    def decode(self, f):
        return torch.tanh(f @ torch.ones(6, 4) * 0.2) * 3


def test_noop_is_exact_and_set_keeps_the_error_for_any_decoder():
    sae, e = _NonAffine(), _embeds(2, 4)
    assert torch.equal(edit_embedding(e, sae, [0, 3]), e)
    f = sae.encode(e)
    f2 = f.clone()
    f2[:, 3] = 5.0
    ref = sae.decode(f2) + (e - sae.decode(f))  # the recipe as written: decode(f') + err
    torch.testing.assert_close(edit_embedding(e, sae, [3], 5.0), ref, rtol=1e-6, atol=1e-6)
