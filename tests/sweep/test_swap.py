"""`--methods swap` in the image sweeps: the target's rising features are set to s x their mean on target
prompts and the falling ones (the value asked for instead) are zeroed, the SAE error kept. Checked against
a hand computation through the SAE's own encode and decode."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from saekit.errors import SteeringError
from saekit.sae import SAEConfig, build
from saekit.sweep.image_factors import FactorSweepConfig, contrast_edits


class _Runner:
    """Stands in for a PipelineRunner: `capture` returns planted mean activations and latents."""

    def __init__(self, sae, f_off, f_on):
        self.sae, self.cfg = (
            sae,
            SimpleNamespace(n_features=1, n_falling=2, methods=("swap",), select="contrast"),
        )
        self._f = {"off": f_off, "on": f_on}

    def capture(self, prompts, spatial=False):
        f = self._f[prompts[0]]
        return torch.zeros(len(f), self.sae.cfg.d_in), f


def test_swap_sets_the_rising_feature_and_zeroes_the_falling_ones():
    sae = build(SAEConfig(d_in=8, d_sae=16, arch="relu"), seed=0).eval()
    f_off = torch.zeros(4, 16)
    f_off[:, 3], f_off[:, 5], f_off[:, 9] = 2.0, 1.5, 0.2  # the source value's features (9: barely)
    f_on = torch.zeros(4, 16)
    f_on[:, 7] = torch.tensor([1.0, 2.0, 3.0, 2.0])  # the target's feature, mean 2.0
    cfg = SimpleNamespace(n_features=1, n_falling=2, methods=("swap",), select="contrast")
    edit_for, feats, _ = contrast_edits(_Runner(sae, f_off, f_on), cfg, ["off"] * 4, ["on"] * 4, "target")
    assert feats == [7]
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    y = edit_for("sae", "swap", 1.5)(x)
    with torch.no_grad():
        f = sae.encode(x)
        err = x - sae.decode(f)
        g = f.clone()
        g[..., 7], g[..., 3], g[..., 5] = 1.5 * 2.0, 0.0, 0.0  # 9 falls least: left alone (n_falling=2)
        want = sae.decode(g) + err
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)


def test_swap_is_a_known_method_and_a_typo_is_not():
    FactorSweepConfig(model="m", sae="s", methods=("swap", "additive"))
    with pytest.raises(SteeringError, match="swap"):
        FactorSweepConfig(model="m", sae="s", methods=("swapp",))
