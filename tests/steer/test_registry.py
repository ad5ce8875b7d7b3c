"""The method registry is the one list of method names and of what they mean elsewhere: the CLI choices
of both `steer` configs, the conditioning edits of the image generators and the zero strength of a
method without one all come from it."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest
import torch

from saekit.errors import SteeringError
from saekit.steer import registry
from saekit.steer.registry import conditioning_methods, get_method, method_names, register_method
from saekit.steer.strength import method_strengths

from .conftest import make_sae


def test_importing_the_registry_alone_sees_the_built_in_methods():
    """No lazy import of the methods module: the package's `__init__` registers them first."""
    code = "from saekit.steer.registry import method_names; print(','.join(method_names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().split(",") == list(method_names())
    assert {"additive", "clamp", "ablate"} <= set(method_names())


def test_both_steer_configs_offer_exactly_the_registered_methods():
    from saekit.steer.image.config import ImageSteerConfig
    from saekit.steer.run import SteerConfig

    for cfg in (SteerConfig, ImageSteerConfig):
        hint = typing.get_type_hints(cfg)["method"]
        assert typing.get_args(hint) == method_names()


def test_conditioning_edits_come_from_the_method_entries(monkeypatch):
    from saekit.steer.image.common import conditioning_edit

    assert conditioning_methods() == tuple(m for m in method_names() if get_method(m).conditioning)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_method("nudge", space="latent", error_preserving=True, conditioning="add")
    def nudge(x, sae, features, strengths):  # pragma: no cover - never called
        return x

    sae = make_sae("relu", d_in=6, d_sae=10)
    edit = conditioning_edit("nudge", "2.5", [3], sae, "no-such-folder")
    assert edit.mode == "add" and edit.values.tolist() == [2.5] and "nudge" in conditioning_methods()
    with pytest.raises(SteeringError, match=r"clamp \(set f_j := s\).*ablate \(set f_j := 0\).*nudge"):
        conditioning_edit("additive", "1", [3], sae, "no-such-folder")
    with pytest.raises(SteeringError, match="current values.*clamp"):
        conditioning_edit("nudge", "current", [3], sae, "no-such-folder")


def test_method_strengths_one_or_one_per_feature_and_zero_without_a_strength():
    sae = make_sae("relu", d_in=6, d_sae=10)
    assert method_strengths("3", "clamp", sae, [1, 2]) == [3.0, 3.0]
    assert method_strengths("3,4", "clamp", sae, [1, 2]) == [3.0, 4.0]
    assert method_strengths("not a strength", "ablate", sae, [1, 2]) == [0.0, 0.0]
    with pytest.raises(SteeringError, match="3 strengths for 2 features"):
        method_strengths("1,2,3", "clamp", sae, [1, 2])
    # each in the method's own space: a length for additive, a latent value (length / gain) for clamp
    gain = float(sae.W_dec[4].detach().norm())  # input_scale 1
    assert method_strengths("1norm", "additive", sae, [4], _Cal()) == [10.0]
    torch.testing.assert_close(
        torch.tensor(method_strengths("1norm", "clamp", sae, [4], _Cal())), torch.tensor([10.0 / gain])
    )


class _Cal:
    mean_norm = 10.0
    max_active = torch.ones(10)
