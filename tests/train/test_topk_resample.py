"""Resampling dormant TopK latents (docs/results/fvu_vs_sparsify.md, issue 15 item 3).

A latent whose pre-activation is negative on every input gets no gradient from aux-k (its value is
ReLU'd to 0, so the aux reconstruction does not depend on it); resampling revives it. Checked against a
hand computation on a one-row batch, and in a short training run against the same run without it.
"""

from __future__ import annotations

import pytest
import torch

from saekit.sae import SAEConfig, build
from saekit.sae.topk import aux_k_loss
from saekit.train import TensorSource, TrainConfig, Trainer
from saekit.train.resample import resample_dead_


def _tiny_topk() -> torch.nn.Module:
    cfg = SAEConfig(arch="topk", d_in=4, d_sae=6, k=1, init_encoder_scale=0.5)
    sae = build(cfg, seed=0)
    with torch.no_grad():
        sae.W_enc[:, 5] = 0.0
        sae.b_enc[5] = -1.0  # pre-activation -1 on every input: latent 5 can never fire
        sae.b_dec.copy_(torch.tensor([0.5, 0.0, -0.5, 1.0]))
    return sae


def test_aux_k_gives_no_gradient_to_a_latent_negative_everywhere():
    sae = _tiny_topk()
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    pre = sae.pre_activation(x)
    assert (pre[:, 5] == -1.0).all()
    dead = torch.zeros(6, dtype=torch.bool)
    dead[5] = True
    loss = aux_k_loss(pre, x - sae(x).recon.detach(), dead, sae.W_dec, k_aux=1, coefficient=1.0)
    loss.backward()
    assert float(loss.detach()) > 0  # the residual is not reconstructed at all ...
    assert sae.b_enc.grad[5] == 0 and (sae.W_enc.grad[:, 5] == 0).all()  # ... and nothing moves


def test_resampling_revives_it_by_hand_computation():
    sae = _tiny_topk()
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = torch.tensor([[3.0, -1.0, 2.0, 0.0]])  # one row: the multinomial can only pick it
    sae(x).losses.total.backward()
    opt.step()  # Adam moments now exist for every entry
    dead = torch.zeros(6, dtype=torch.bool)
    dead[5] = True
    live_norm = sae.W_enc[:, :5].norm(dim=0).mean()
    n = resample_dead_(sae, opt, dead, x, torch.Generator().manual_seed(0), encoder_scale=0.2)
    assert n == 1
    direction = (x[0] - sae.b_dec) / (x[0] - sae.b_dec).norm()  # b_dec untouched by resampling
    torch.testing.assert_close(sae.W_dec[5], direction)
    torch.testing.assert_close(sae.W_enc[:, 5], 0.2 * live_norm * direction)
    assert sae.b_enc[5] == 0
    for p, idx in ((sae.W_enc, (slice(None), 5)), (sae.b_enc, 5), (sae.W_dec, 5)):
        assert (opt.state[p]["exp_avg"][idx] == 0).all() and (opt.state[p]["exp_avg_sq"][idx] == 0).all()
    # on that row its pre-activation is now 0.2 * live_norm * |x - b_dec| (plus the zero bias)
    expected = 0.2 * live_norm * (x[0] - sae.b_dec).norm()
    torch.testing.assert_close(sae.pre_activation(x)[0, 5], expected)


def _rows() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(256, 32, generator=g)
    basis /= basis.norm(dim=-1, keepdim=True)
    return torch.rand(4096, 256, generator=g).pow(12) * 5 @ basis + 0.05 * torch.randn(4096, 32, generator=g)


@pytest.mark.parametrize("resample_every", [0, 4])
def test_training_revives_latents_killed_at_init_only_with_resampling(tmp_path, resample_every):
    torch.set_num_threads(1)
    x = _rows()
    # on these very sparse rows 0.2x the live encoder norm is too weak to win a top-4: 1.0 here
    cfg = TrainConfig.flat(
        arch="topk", k=4, d_sae=128, batch_size=256, total_tokens=256 * 24, quiet=True, seed=0,
        init_sample=1024, resample_every=resample_every, revive_tokens=512, resample_encoder_scale=1.0,
    )  # fmt: skip
    trainer = Trainer(cfg, TensorSource(x), out=tmp_path)
    orig_fresh = trainer._fresh

    def fresh():  # kill a quarter of the latents: negative pre-activation on every input
        sae = orig_fresh()
        sae.b_enc.data[:32] = -1e3
        return sae

    trainer._fresh = fresh
    sae = trainer.run().sae.eval()
    with torch.no_grad():
        fired = (sae.encode(x) != 0).any(0)
    if resample_every:
        assert fired[:32].float().mean() > 0.5
    else:
        assert not fired[:32].any()  # aux-k (10M-row dead threshold) and the loss never reach them


def test_bias_nudge_raises_only_dormant_latents_by_the_step():
    from saekit.train.revive import nudge_dormant_bias_

    sae = _tiny_topk()
    before = sae.b_enc.detach().clone()
    dormant = torch.tensor([False, True, False, False, False, True])
    for _ in range(8):
        assert nudge_dormant_bias_(sae, dormant, 0.25) == 2
    torch.testing.assert_close(sae.b_enc.detach(), before + 2.0 * dormant)  # 8 x 0.25 on latents 1 and 5
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    assert (sae.pre_activation(x)[:, 5] == 1.0).all()  # -1 + 2: was negative everywhere


def test_topk_defaults_scale_with_the_average_firing_interval():
    from saekit.train.revive import revive_plan

    cfg = TrainConfig.flat(arch="topk", k=32, d_sae=9216, batch_size=1024)
    plan = revive_plan(cfg, 555, 10_000_000, 9216)
    got = (plan.dormant_rows, plan.every, plan.until_step, plan.bias_step)
    assert got == (32 * 9216 // 32, 4, 278, 0.005)
    big = revive_plan(cfg.replace(k=8), 555, 10_000, 2**20)
    assert big.dormant_rows == 10_000  # capped at the aux-k dead threshold
    relu = revive_plan(TrainConfig.flat(arch="relu"), 100, 10_000_000, 64)
    assert (relu.every, relu.until_step, relu.bias_step) == (25, 100, 0.0)  # Anthropic's 25/50/75%
