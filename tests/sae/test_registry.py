"""The architecture registry is the one list: a new file + `@register` is all an architecture needs,
and a second class under a taken name is refused."""

from __future__ import annotations

import pytest
import torch

from saekit.errors import SAEConfigError
from saekit.sae import SAEConfig, build, registry
from saekit.sae.relu import ReLUSAE


def test_registered_architecture_is_buildable_everywhere(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register
    class SquaredReLU(ReLUSAE):
        arch = "relu2"

        def activation(self, pre_BF):
            return pre_BF.relu() ** 2

    assert "relu2" in registry.architectures() and not registry.needs_k("relu2")
    sae = build(SAEConfig(d_in=4, d_sae=8, arch="relu2"), seed=0)
    x = torch.randn(3, 4)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(sae.encode(x), pre.relu() ** 2)


def test_duplicate_name_refused_and_unknown_listed(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Impostor(ReLUSAE):
        arch = "topk"

    with pytest.raises(SAEConfigError, match="'topk' is already registered by saekit.sae.topk.TopKSAE"):
        registry.register(Impostor)
    listed = "choose one of batchtopk, gated, jumprelu, matryoshka_batchtopk, matryoshka_topk, relu, topk"
    with pytest.raises(SAEConfigError, match=listed):
        SAEConfig(d_in=4, d_sae=8, arch="nope")


def test_configs_read_the_registry():
    from typing import get_args

    from saekit.train.config import ArchName

    assert set(get_args(ArchName)) == set(registry.architectures())
    assert registry.k_architectures() == [
        "batchtopk", "matryoshka_batchtopk", "matryoshka_topk", "topk", "topk_abs", "topk_signed"
    ]  # fmt: skip
    with pytest.raises(SAEConfigError, match="needs k"):
        SAEConfig(d_in=4, d_sae=8, arch="topk_abs")
