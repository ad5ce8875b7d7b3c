"""Spatial (token-dependent) in-loop edits against independent computations: explicit loops over tokens
and steps, and the SAE's own decode (not the library's latent_edit)."""

from __future__ import annotations

import pytest
import torch

from saekit.errors import SteeringError
from saekit.sae import SAEConfig, build
from saekit.steer.image.spatial import (
    map_mean_shift,
    spatial_add,
    spatial_features,
    spatial_sae_edit,
)

B, S, T, D = 2, 3, 5, 12


@pytest.fixture(params=["topk", "relu"])
def sae(request):
    kw = {"k": 4} if request.param == "topk" else {}
    s = build(SAEConfig(d_in=D, d_sae=40, arch=request.param, **kw), seed=1).eval()
    s.input_scale.fill_(0.6)  # a non-trivial normalisation: the decode below must fold it in
    return s


def _x(seed=0):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed)) * 3


def test_map_mean_shift_is_the_difference_of_prompt_means_per_position():
    g = torch.Generator().manual_seed(0)
    on, off = torch.randn(4, S, T, D, generator=g), torch.randn(6, S, T, D, generator=g)
    got = map_mean_shift(on, off)
    assert got.shape == (S, T, D)
    for s in range(S):
        for t in range(T):
            ref = sum(on[p, s, t] for p in range(4)) / 4 - sum(off[p, s, t] for p in range(6)) / 6
            assert torch.allclose(got[s, t], ref, atol=1e-5)
    with pytest.raises(SteeringError, match="same trailing shape"):
        map_mean_shift(on, off[:, :, :2])


def test_spatial_add_pushes_each_token_by_its_own_row_on_the_given_step():
    x = _x()
    delta = torch.randn(S, T, D, generator=torch.Generator().manual_seed(5))
    out = spatial_add(x, delta, 2.5, step=1)
    for b in range(B):
        for t in range(T):
            assert torch.allclose(out[b, t], x[b, t] + 2.5 * delta[1, t], atol=1e-5)
    # a map without a step axis is the same on every step; strength 0 is no edit at all
    assert torch.allclose(spatial_add(x, delta[2], 1.0), x + delta[2], atol=1e-6)
    assert torch.equal(spatial_add(x, delta, 0.0, step=0), x)
    assert spatial_add(x.to(torch.bfloat16), delta, 1.0, step=0).dtype == torch.bfloat16


def test_spatial_add_refuses_wrong_tokens_steps_and_width():
    x = _x()
    with pytest.raises(SteeringError, match="5 tokens"):
        spatial_add(x, torch.zeros(T + 1, D), 1.0)
    with pytest.raises(SteeringError, match="step 3"):
        spatial_add(x, torch.zeros(S, T, D), 1.0, step=S)
    with pytest.raises(SteeringError, match="step None"):
        spatial_add(x, torch.zeros(S, T, D), 1.0)
    with pytest.raises(SteeringError, match="d=7"):
        spatial_add(x, torch.zeros(T, 7), 1.0)
    with pytest.raises(SteeringError, match="batch, tokens, d"):
        spatial_add(x[0], torch.zeros(T, D), 1.0)


def _decode_reference(sae, x, feats, new_vals_fn):
    """Per (row, token): decode(f') - decode(f) + x, with f' built in a loop; the SAE's own decode."""
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            f = sae.encode(x[b, t][None])[0]
            f2 = f.clone()
            for i, j in enumerate(feats):
                f2[j] = new_vals_fn(b, t, i, f[j])
            out[b, t] = x[b, t] + sae.decode(f2[None])[0] - sae.decode(f[None])[0]
    return out


def test_spatial_sae_add_moves_each_token_by_its_map_through_the_decoder(sae):
    x, feats = _x(1), [3, 17]
    fmap = torch.randn(S, T, 2, generator=torch.Generator().manual_seed(2))
    got = spatial_sae_edit(x, sae, feats, fmap, 1.5, mode="add", step=2)
    ref = _decode_reference(sae, x, feats, lambda b, t, i, fj: fj + 1.5 * fmap[2, t, i])
    assert torch.allclose(got, ref, atol=1e-4)
    # a non-constant map really pushes tokens differently
    assert not torch.allclose(got[0, 0] - x[0, 0], got[0, 1] - x[0, 1], atol=1e-3)
    assert torch.equal(spatial_sae_edit(x, sae, feats, fmap, 0.0, step=0), x)


def test_spatial_sae_clamp_sets_each_token_to_its_map(sae):
    x, feats = _x(3), [0, 9, 21]
    fmap = torch.rand(T, 3, generator=torch.Generator().manual_seed(4)) * 5
    got = spatial_sae_edit(x, sae, feats, fmap, 2.0, mode="set")
    ref = _decode_reference(sae, x, feats, lambda b, t, i, fj: 2.0 * fmap[t, i])
    assert torch.allclose(got, ref, atol=1e-4)
    # the edited activations' chosen latents move toward the map (re-encoded; the error stays, so
    # a ReLU/TopK encoder need not hit the values exactly: only the direction of the change is checked)
    f0, f1 = sae.encode(x)[..., feats], sae.encode(got)[..., feats]
    target = 2.0 * fmap.expand(B, T, 3)
    assert ((f1 - target).abs() <= (f0 - target).abs() + 1e-3).float().mean() > 0.7


def test_spatial_sae_edit_refuses_bad_input(sae):
    x = _x()
    with pytest.raises(SteeringError, match="columns"):
        spatial_sae_edit(x, sae, [1, 2], torch.zeros(T, 3), 1.0)
    with pytest.raises(SteeringError, match="mode"):
        spatial_sae_edit(x, sae, [1], torch.zeros(T, 1), 1.0, mode="mul")
    with pytest.raises(SteeringError, match="d_in"):
        spatial_sae_edit(torch.zeros(B, T, D + 1), sae, [1], torch.zeros(T, 1), 1.0)
    with pytest.raises(SteeringError, match="out of range"):
        spatial_sae_edit(x, sae, [400], torch.zeros(T, 1), 1.0)


def test_spatial_features_find_a_latent_that_moves_but_does_not_rise():
    g = torch.Generator().manual_seed(0)
    off = torch.rand(S, T, 16, generator=g)
    on = off.clone()
    on[:, 0, 6] += 2.0  # latent 6 moves: more on token 0, less on token 1, same mean over tokens
    on[:, 1, 6] -= 2.0
    on[:, :, 11] += 0.3  # latent 11 rises a little everywhere
    feats, scores = spatial_features(on, off, 2)
    assert feats == [6, 11]
    ref6 = ((on[..., 6] - off[..., 6]) ** 2).mean().sqrt()
    assert scores[0] == pytest.approx(float(ref6), rel=1e-5)
    # the mean over tokens of latent 6 does not move, so a mean-rise choice would miss it
    assert abs(float((on[..., 6] - off[..., 6]).mean())) < 1e-5
    with pytest.raises(SteeringError, match="asked for 0"):
        spatial_features(on, off, 0)
