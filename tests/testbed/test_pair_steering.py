"""Source-aware class-to-class edits (saekit.testbed.pair_steering) and the c2c study's pieces."""

from __future__ import annotations

import pytest
import torch

from saekit.errors import SteeringError
from saekit.sae import SAEConfig, build
from saekit.testbed.c2c import pair_set, site_keys
from saekit.testbed.config import ci_config
from saekit.testbed.flow import StepContext
from saekit.testbed.pair_steering import make_pair_edit, pair_features, pair_vector, site_stats

torch.set_num_threads(1)


def _stats(d: int = 8, seed: int = 0):
    sae = build(SAEConfig(d_in=d, d_sae=32, arch="topk", k=4), seed=seed)
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(600) % 10
    centers = torch.randn(10, d, generator=g) * 3
    acts = centers[labels] + 0.1 * torch.randn(600, d, generator=g)
    return site_stats(sae, acts, labels), acts, labels, centers


def test_pair_diffmean_is_the_difference_of_the_two_class_means():
    st, acts, labels, _ = _stats()
    v = pair_vector("dm_pair", st, 3, 7)
    ref = acts[labels == 7].mean(0) - acts[labels == 3].mean(0)  # independent of site_stats' index_add
    assert torch.allclose(v, ref, atol=1e-5)
    assert torch.allclose(
        pair_vector("dm_target", st, 3, 7), acts[labels == 7].mean(0) - acts.mean(0), atol=1e-5
    )
    with pytest.raises(SteeringError, match="fixed-vector"):
        pair_vector("sae_swap", st, 3, 7)


def test_pair_features_rank_latents_by_class_mean_difference():
    st, *_ = _stats()
    lm = torch.zeros_like(st.latent_mean)
    lm[2, 5], lm[2, 9], lm[6, 11], lm[6, 1] = 3.0, 2.0, 4.0, 1.0
    on, off = pair_features(st._replace(latent_mean=lm), a=2, b=6, m=2)
    assert on.tolist() == [11, 1] and off.tolist() == [5, 9]


def test_swap_moves_x_by_the_decoded_latent_change_only_on_the_cond_branch_and_listed_steps():
    st, *_ = _stats()
    sae = st.sae
    src, tgt = torch.tensor([1, 4]), torch.tensor([8, 0])
    edit = make_pair_edit({("cond", "cond"): st}, "sae_swap", src, tgt, torch.tensor([1.0, 2.0]), {0}, m=3)
    x = torch.randn(2, 1, 8) * 3
    out = edit(StepContext(0, 1.0, "cond"), "cond", "cond", x)
    z = sae.encode(x[:, 0])
    for i, (a, b, s) in enumerate(zip(src.tolist(), tgt.tolist(), (1.0, 2.0))):
        on, off = pair_features(st, a, b, 3)
        z2 = z[i].clone()
        z2[off] = 0.0
        z2[on] = s * st.latent_mean[b, on]
        ref = x[i, 0] + (z2 - z[i]) @ sae.W_dec / sae.input_scale  # linear decoder: b_dec cancels
        assert torch.allclose(out[i, 0], ref, atol=1e-4)
    assert edit(StepContext(0, 1.0, "uncond"), "cond", "cond", x) is x
    assert edit(StepContext(1, 0.9, "cond"), "cond", "cond", x) is x
    assert edit(StepContext(0, 1.0, "cond"), "transformer_blocks.0", "text", x) is x


def test_pair_set_covers_all_ordered_pairs_and_site_sets_name_their_sites():
    cfg = ci_config()
    ps = pair_set(cfg, 5, list(range(1, 10)))
    pairs = set(zip(ps.source.tolist(), ps.target.tolist()))
    assert len(pairs) == 90 and all(a != b for a, b in pairs)
    assert site_keys(cfg, "cond") == [("cond", "cond")]
    assert site_keys(cfg, "cond+text") == [("cond", "cond")] + [(b, "text") for b in cfg.block_names()]
