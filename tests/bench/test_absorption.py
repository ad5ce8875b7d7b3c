"""Absorption against a planted absorbing latent: exactly its token is counted, nothing else."""

from __future__ import annotations

import pytest
import torch

from saekit.bench.absorption import AbsorptionConfig, absorption_metrics, fit_letter_probe, main_latents

from .conftest import relu_sae

D = 16
APPLE = 5  # the dimension only the "apple" token has


def _words(n_per_letter: int, n_apple: int, seed: int):
    """Letters a, b, c along e0, e1, e2 (strength 3-5) plus noise on dims 6.., and `n_apple` copies of
    one letter-a token that also carries e5."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for letter in range(3):
        x = torch.zeros(n_per_letter, D)
        x[:, letter] = 3 + 2 * torch.rand(n_per_letter, generator=g)
        x[:, 6:] = 0.5 * torch.randn(n_per_letter, D - 6, generator=g)
        xs.append(x)
        ys += [letter] * n_per_letter
    apple = torch.zeros(n_apple, D)
    apple[:, 0] = 4.0
    apple[:, APPLE] = 4.0
    apple[:, 6:] = 0.5 * torch.randn(n_apple, D - 6, generator=g)
    return torch.cat(xs + [apple]), torch.tensor(ys + [0] * n_apple)


def _absorbing_sae():
    e = torch.eye(D)
    W_enc = torch.stack([e[0] - 2 * e[APPLE], e[1], e[2], e[APPLE]], dim=1)  # apple switches latent 0 off
    W_dec = torch.stack([e[0], e[1], e[2], (e[0] + e[APPLE]) / 2**0.5])  # latent 3 absorbed "starts with a"
    return relu_sae(W_enc, W_dec)


def test_planted_absorbing_latent_counts_its_token_only():
    x_tr, y_tr = _words(60, 1, seed=0)
    x_te, y_te = _words(20, 5, seed=1)
    probe = fit_letter_probe(x_tr, y_tr, x_te, y_te, c=1.0)
    assert bool(probe.correct.all())
    assert int(probe.direction[0].abs().argmax()) == 0  # the probe found e0 for "a"
    m = absorption_metrics(_absorbing_sae(), probe, AbsorptionConfig(), n_boot=200)
    a, b, c = (m["letters"][k] for k in "abc")
    assert a["main_latents"] == [0] and b["main_latents"] == [1] and c["main_latents"] == [2]
    assert (a["eligible_words"], a["absorbed"]) == (25, 5)  # the five apples, and no other a-word
    assert b["absorbed"] == 0 and c["absorbed"] == 0
    assert m["absorption_rate"].value == pytest.approx((5 / 25) / 3)
    assert m["main_miss_rate"].value == pytest.approx((5 / 25) / 3)
    assert m["split_latents"].value == pytest.approx(1.0)


def test_no_absorption_when_the_token_latent_is_not_along_the_probe():
    """Same SAE, but latent 3's decoder is orthogonal to e0: the apples lose their main latent (a miss)
    without an absorbing latent, so they are not counted as absorbed."""
    sae = _absorbing_sae()
    with torch.no_grad():
        sae.W_dec[3] = torch.eye(D)[APPLE]
    x_tr, y_tr = _words(60, 1, seed=0)
    x_te, y_te = _words(20, 5, seed=1)
    probe = fit_letter_probe(x_tr, y_tr, x_te, y_te, c=1.0)
    m = absorption_metrics(sae, probe, AbsorptionConfig(), n_boot=0)
    assert m["letters"]["a"]["absorbed"] == 0
    assert m["main_miss_rate"].value == pytest.approx((5 / 25) / 3)
    assert m["absorption_rate"].value == 0.0


def test_split_letter_counts_two_main_latents():
    """Letter a's words fire one of two latents (half each): both are main latents, a split of 2."""
    fired = torch.zeros(100, 3, dtype=torch.bool)
    fired[:25, 0] = True  # words 0-49 start with a; latent 0 takes half of them, latent 1 the other half
    fired[25:50, 1] = True
    fired[50:, 2] = True  # a latent of the other words
    is_a = torch.arange(100) < 50
    latents, f1 = main_latents(fired, is_a, [7, 8, 9], AbsorptionConfig())
    assert latents == [7, 8] and f1 == pytest.approx(1.0)
