"""Steering methods vs hand-computed values and the no-op identity of error-preserving methods."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from saekit.errors import ShapeError, SteeringError
from saekit.steer import methods as M

from .conftest import make_sae


def tiny_relu_sae():
    """d_in=2, d_sae=3, identity-ish encoder so every value is computable by hand."""
    sae = make_sae("relu", d_in=2, d_sae=3)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 4.0]]))  # norms 2, 1, 5
        sae.b_dec.copy_(torch.tensor([0.5, 0.0]))
        sae.input_scale.fill_(1.0)
    return sae


# x = [1.5, 2]: x - b_dec = [1, 2]; pre = [1, 2, -1]; f = [1, 2, 0]
# x_hat = 1*[2,0] + 2*[0,1] + b_dec = [2.5, 2]; e = x - x_hat = [-1, 0]
X = torch.tensor([[1.5, 2.0]])


def test_hand_encode_decode():
    sae = tiny_relu_sae()
    assert torch.allclose(sae.encode(X), torch.tensor([[1.0, 2.0, 0.0]]))
    assert torch.allclose(sae.decode(sae.encode(X)), torch.tensor([[2.5, 2.0]]))


def test_additive_hand():
    sae = tiny_relu_sae()
    # d_2 = [3,4]/5 = [0.6, 0.8]; x + 10 d_2 = [7.5, 10]
    assert torch.allclose(M.additive(X, sae, [2], 10.0), torch.tensor([[7.5, 10.0]]))
    # two features: + 1*[1,0] + 2*[0,1]
    assert torch.allclose(M.additive(X, sae, [0, 1], [1.0, 2.0]), torch.tensor([[2.5, 4.0]]))


def test_surgery_hand():
    sae = tiny_relu_sae()
    # f' = [1, 2, 1]; decode = [2,0] + [0,2] + [3,4] + b_dec = [5.5, 6]  (error [-1, 0] dropped)
    assert torch.allclose(M.surgery(X, sae, [2], 1.0), torch.tensor([[5.5, 6.0]]))
    # s = 0 returns x_hat, not x
    assert torch.allclose(M.surgery(X, sae, [2], 0.0), torch.tensor([[2.5, 2.0]]))


def test_clamp_hand():
    sae = tiny_relu_sae()
    # f' = [4, 2, 0]: decode = [8.5, 2]; + e = [7.5, 2]
    assert torch.allclose(M.clamp(X, sae, [0], 4.0), torch.tensor([[7.5, 2.0]]))
    # both: f' = [1, 0, 2]: decode = [2,0]+[6,8]+b = [8.5, 8]; + e = [7.5, 8]
    assert torch.allclose(M.clamp(X, sae, [1, 2], [0.0, 2.0]), torch.tensor([[7.5, 8.0]]))


def test_ablate_hand():
    sae = tiny_relu_sae()
    # f' = [1, 0, 0] -> decode [2.5, 0] + e = [1.5, 0]
    assert torch.allclose(M.ablate(X, sae, [1]), torch.tensor([[1.5, 0.0]]))


def test_boost_active_hand():
    sae = tiny_relu_sae()
    # feature 0 active (f=1): f' = [3, 2, 0] -> decode [6.5, 2] (no error) ; with error: [5.5, 2]
    assert torch.allclose(M.boost_active(X, sae, [0], 2.0), torch.tensor([[6.5, 2.0]]))
    assert torch.allclose(M.boost_active(X, sae, [0], 2.0, keep_error=True), torch.tensor([[5.5, 2.0]]))
    # feature 2 inactive: additive of the decoded vector 2*W_dec_2 = [6, 8] onto x -> [7.5, 10]
    assert torch.allclose(M.boost_active(X, sae, [2], 2.0), torch.tensor([[7.5, 10.0]]))


def test_input_scale_units():
    """With input_scale c, one latent unit moves the raw activation by W_dec_j / c."""
    sae = tiny_relu_sae()
    with torch.no_grad():
        sae.input_scale.fill_(2.0)
    f = sae.encode(X)
    out = M.clamp(X, sae, [0], f[0, 0] + 1.0)
    assert torch.allclose(out - X, torch.tensor([[1.0, 0.0]]))  # [2, 0] / 2
    assert torch.allclose(M.feature_gain(sae, [0, 2]), torch.tensor([1.0, 2.5]))


ARCHS = ["relu", "topk", "batchtopk", "jumprelu", "gated"]


@settings(max_examples=25, deadline=None)
@given(
    arch=st.sampled_from(ARCHS),
    seed=st.integers(0, 10_000),
    feature=st.integers(0, 9),
    scale=st.floats(0.25, 4.0),
)
def test_noop_identity(arch, seed, feature, scale):
    sae = make_sae(arch, seed=seed % 7, input_scale=scale)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(seed)) * 3
    f_j = sae.encode(x)[:, feature]
    assert torch.allclose(M.additive(x, sae, [feature], 0.0), x, atol=1e-6)
    assert torch.allclose(M.clamp(x, sae, [feature], f_j[:, None]), x, atol=1e-6)
    assert torch.allclose(M.boost_active(x, sae, [feature], 0.0, keep_error=True), x, atol=1e-6)
    # clamp == decode(f') + e literally, for an arbitrary target value
    f = sae.encode(x)
    f2 = f.clone()
    f2[:, feature] = 1.7
    literal = sae.decode(f2) + (x - sae.decode(f))
    assert torch.allclose(M.clamp(x, sae, [feature], 1.7), literal, atol=1e-5)
    # surgery == decode(f + s 1_j) literally
    f3 = f.clone()
    f3[:, feature] += 0.9
    assert torch.allclose(M.surgery(x, sae, [feature], 0.9), sae.decode(f3), atol=1e-5)


def test_topk_clamp_sets_feature_outside_topk():
    sae = make_sae("topk", k=2, seed=3)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    f = sae.encode(x)
    row_off = f == 0
    j = int(row_off[0].nonzero()[0])
    out = M.clamp(x[:1], sae, [j], 5.0)
    expect = x[:1] + 5.0 * sae.W_dec[j]
    assert torch.allclose(out, expect, atol=1e-5)


def test_per_row_strengths_batch():
    sae = make_sae("relu", seed=1)
    x = torch.randn(2, 3, 6)
    s = torch.tensor([0.0, 2.0]).reshape(2, 1, 1)
    out = M.additive(x, sae, [4], s)
    assert torch.allclose(out[0], x[0])
    assert torch.allclose(out[1], M.additive(x[1], sae, [4], 2.0))


def test_bad_inputs():
    sae = make_sae("relu")
    x = torch.randn(2, 6)
    with pytest.raises(SteeringError, match="out of range"):
        M.additive(x, sae, [99], 1.0)
    with pytest.raises(SteeringError, match="duplicates"):
        M.clamp(x, sae, [1, 1], [1.0, 2.0])
    with pytest.raises(SteeringError, match="broadcast"):
        M.clamp(x, sae, [1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ShapeError, match="d_in=6"):
        M.additive(torch.randn(2, 5), sae, [1], 1.0)
    with pytest.raises(SteeringError, match="did you mean 'clamp'"):
        M.apply_method("clamps", x, sae, [1], 1.0)


def test_dtype_bf16_input_fp32_sae():
    sae = make_sae("relu")
    x = torch.randn(3, 6).to(torch.bfloat16)
    out = M.clamp(x, sae, [2], sae.encode(x)[:, 2:3])
    assert out.dtype == torch.float32
    assert torch.equal(out.to(torch.bfloat16), x)  # no-op survives the round trip exactly
