"""Imported SAEs with new behaviour work in every consumer: signed latents (a negative latent is
active), per-row layer norm and skip terms (decode needs the input row). Each check compares against
a hand-computed expectation, not against the code path it exercises."""

from __future__ import annotations

import pytest
import torch

from saekit.analysis.real import encode_into
from saekit.analysis.stats import FeatureStats
from saekit.errors import ShapeError
from saekit.eval.activations import activation_metrics
from saekit.sae import SAEConfig, build
from saekit.steer import methods
from saekit.steer.calibration import measure

from .conftest import D_IN, D_SAE, acts, assert_close


def signed_sae(arch="topk_abs", **kw):
    sae = build(SAEConfig(d_in=D_IN, d_sae=D_SAE, arch=arch, k=4, **kw), seed=1).eval()
    with torch.no_grad():
        sae.b_enc.fill_(-0.3)  # push pre-activations negative so |top-k| keeps negatives
        if kw.get("skip_connection"):
            sae.W_skip.copy_(torch.randn(D_IN, D_IN, generator=torch.Generator().manual_seed(2)) * 0.2)
    return sae


def test_negative_latents_count_as_active_in_metrics_stats_and_calibration():
    sae = signed_sae()
    x = acts(seed=1, n=64)
    f = sae.encode(x)
    assert (f < 0).any()
    assert int((f != 0).sum(-1).max()) == 4
    m = activation_metrics(sae, [x])
    assert m.l0 == pytest.approx(4.0)  # every row has exactly k non-zero latents, negative ones included
    stats = FeatureStats(D_SAE)
    encode_into(sae, x, torch.arange(64), None, stats)
    assert torch.equal(stats.count_F, (f != 0).sum(0))
    assert torch.allclose(stats.max_F, f.abs().max(0).values)
    cal = measure(sae, [x])
    assert torch.allclose(cal.freq.float(), (f != 0).float().mean(0))
    assert torch.allclose(cal.max_active.float(), f.abs().max(0).values)


def test_boost_active_treats_a_negative_latent_as_active():
    sae = signed_sae()
    x = acts(seed=3, n=64)
    f = sae.encode(x)
    j = int((f < 0).sum(0).argmax())  # a feature that is negative on some rows
    neg = f[:, j] < 0
    off = f[:, j] == 0
    assert neg.any() and off.any()
    out = methods.boost_active(x, sae, [j], 2.0)
    d_j = sae.W_dec[j].detach()
    f2 = f.clone()
    f2[:, j] += 2.0
    rebuilt = f2 @ sae.W_dec.detach() + sae.b_dec.detach()  # decode(f + s 1_j), error dropped
    assert_close(out[neg], rebuilt[neg], "active (negative) rows are rebuilt from the SAE")
    assert_close(out[off], (x + 2.0 * d_j)[off], "inactive rows get the decoded shift")


@pytest.mark.parametrize(
    "kw", [{"normalization": "layer_norm"}, {"skip_connection": True}], ids=["ln", "skip"]
)
def test_row_dependent_decode_in_steering_and_eval(kw):
    sae = signed_sae("topk", **kw)
    x = acts(seed=5, n=32) * 4.0 + 1.5
    with pytest.raises(ShapeError, match="decode\\(latents, x\\)"):
        sae.decode(sae.encode(x))
    f = sae.encode(x)
    assert_close(methods.clamp(x, sae, [3], f[:, 3:4]), x, "clamp to the current value is a no-op")
    assert_close(methods.boost_active(x, sae, [3], 0.0, keep_error=True), x, "boost by 0 is a no-op")
    # clamp = decode(f with f_j := s, x) + (x - decode(f, x)), by the definition
    f2 = f.clone()
    f2[:, 3] = 5.0
    expected = sae.decode(f2, x) + (x - sae.decode(f, x))
    assert_close(methods.clamp(x, sae, [3], 5.0), expected, "clamp in raw units")
    if "normalization" in kw:  # raw-unit shift of a latent change scales with each row's std
        std = (x - x.mean(-1, keepdim=True)).std(-1, keepdim=True)
        shift = methods.clamp(x, sae, [3], 5.0) - methods.clamp(x, sae, [3], 4.0)
        assert_close(shift, std * sae.W_dec[3].detach(), "per-row std scaling")
    m = activation_metrics(sae, [x])
    err = (x.double() - sae.reconstruct(x).detach().double()).pow(2).sum()
    var = (x.double() - x.double().mean(0)).pow(2).sum()
    assert m.fvu == pytest.approx(float(err / var), rel=1e-4)
