"""Strength parsing and unit conversion against hand-computed values."""

import pytest
import torch

from saekit.errors import SteeringError
from saekit.steer.calibration import Calibration
from saekit.steer.strength import Strength, parse_strength, parse_strengths, resolve, resolve_for_features

from .conftest import make_sae


@pytest.mark.parametrize(
    "text,value,unit",
    [
        ("4max", 4.0, "max"),
        ("0.5norm", 0.5, "norm"),
        ("12", 12.0, "abs"),
        ("12abs", 12.0, "abs"),
        (" -2.5max ", -2.5, "max"),
        (".5norm", 0.5, "norm"),
        ("1e1", 10.0, "abs"),
        (3, 3.0, "abs"),
    ],
)
def test_parse(text, value, unit):
    assert parse_strength(text) == Strength(value, unit)


def test_parse_errors_and_lists():
    with pytest.raises(SteeringError, match="4max"):
        parse_strength("4 maxx")
    with pytest.raises(SteeringError):
        parse_strength("norm")
    assert [str(s) for s in parse_strengths("0.25norm, 1norm,2max,3")] == ["0.25norm", "1norm", "2max", "3"]


def test_resolve_units_hand():
    # mean_norm 10, gain 2, feature max 3
    kw = dict(gain=2.0, mean_norm=10.0, feature_max=3.0, feature=7)
    assert resolve(Strength(5, "abs"), "latent", **kw) == 5
    assert resolve(Strength(0.5, "norm"), "activation", **kw) == 5.0
    assert resolve(Strength(0.5, "norm"), "latent", **kw) == 2.5  # length 5 / gain 2
    assert resolve(Strength(4, "max"), "latent", **kw) == 12.0
    assert resolve(Strength(4, "max"), "activation", **kw) == 24.0  # 12 latent units * gain 2


def test_missing_calibration_names_the_command():
    with pytest.raises(SteeringError, match="saekit scale --sae my_sae"):
        resolve(Strength(4, "max"), "latent", gain=1.0, feature=3, sae_folder="my_sae")
    with pytest.raises(SteeringError, match="saekit scale"):
        resolve(Strength(1, "norm"), "activation", gain=1.0)
    with pytest.raises(SteeringError, match="never fired"):
        resolve(Strength(4, "max"), "latent", gain=1.0, mean_norm=1.0, feature_max=0.0, feature=3)


def test_resolve_for_features_uses_sae_gain_and_calibration():
    sae = make_sae("relu", d_in=6, d_sae=10, input_scale=2.0)
    cal = Calibration(
        mean_norm=8.0,
        median_norm=7.0,
        n_tokens=10,
        mean_active=torch.ones(10),
        max_active=torch.arange(10.0),
        freq=torch.ones(10),
    )
    g = (sae.W_dec.norm(dim=-1) / 2.0).detach()
    out = resolve_for_features("0.5norm", "latent", sae, [1, 4], cal)
    assert out == pytest.approx([4.0 / float(g[1]), 4.0 / float(g[4])], rel=1e-5)
    assert resolve_for_features("2max", "latent", sae, [3], cal) == [6.0]
    assert resolve_for_features("2max", "activation", sae, [3], cal) == pytest.approx(
        [6.0 * float(g[3])], rel=1e-5
    )
    # 0.5norm means the same activation-space push for clamp (latent) and additive (activation)
    from saekit.steer.methods import additive, clamp

    x = torch.zeros(1, 6)
    f4 = sae.encode(x)[0, 4]
    lat = resolve_for_features("0.5norm", "latent", sae, [4], cal)[0]
    moved_clamp = (clamp(x, sae, [4], f4 + lat) - x).norm()
    moved_add = (
        additive(x, sae, [4], resolve_for_features("0.5norm", "activation", sae, [4], cal)[0]) - x
    ).norm()
    assert float(moved_clamp) == pytest.approx(4.0, rel=1e-4)
    assert float(moved_add) == pytest.approx(4.0, rel=1e-4)
