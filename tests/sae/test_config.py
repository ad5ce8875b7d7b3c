"""SAEConfig validation and (de)serialisation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from saekit.errors import SAEConfigError
from saekit.sae import Provenance, SAEConfig, architectures, build
from saekit.sae.registry import get_class


def test_round_trip_through_json_with_provenance():
    cfg = SAEConfig(
        d_in=8,
        d_sae=32,
        arch="batchtopk",
        k=4,
        dtype="bfloat16",
        normalization="expected_norm",
        provenance=Provenance(
            model="smollm2", hook_point="model.layers.3", layer=3, tokens_trained=1234, model_dtype="bfloat16"
        ),
    )
    again = SAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again.provenance, Provenance)
    assert cfg.replace(k=8).k == 8 and cfg.k == 4


def test_config_is_frozen():
    cfg = SAEConfig(d_in=4, d_sae=8, k=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.k = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(arch="topk"), "needs k"),
        (dict(arch="batchtopk", k=0), "k must be"),
        (dict(arch="topk", k=9), "k must be"),
        (dict(arch="mystery"), "unknown SAE architecture 'mystery'"),
        (dict(arch="relu", dtype="int8"), "dtype 'int8'"),
        (dict(arch="relu", normalization="zscore"), "normalization 'zscore'"),
        (dict(arch="jumprelu", jumprelu_bandwidth=0.0), "jumprelu_bandwidth"),
        (dict(arch="jumprelu", jumprelu_init_threshold=0.0), "jumprelu_init_threshold"),
        (dict(arch="relu", sparsity_coefficient=-1.0), "sparsity_coefficient"),
        (dict(arch="topk", k=2, aux_k=0), "aux_k"),
        (dict(arch="topk", k=2.0), "k must be an integer"),
        (dict(arch="relu", d_in=4.0), "d_in must be an integer"),
        (dict(arch="relu", d_sae=float("nan")), "d_sae must be an integer"),
        (dict(arch="relu", d_sae=True), "d_sae must be an integer"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, match):
    kwargs = {"d_in": 4, "d_sae": 8, **kwargs}
    with pytest.raises(SAEConfigError, match=match):
        SAEConfig(**kwargs)


def test_non_positive_sizes_rejected():
    with pytest.raises(SAEConfigError, match="d_in"):
        SAEConfig(d_in=0, d_sae=8, arch="relu")


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(SAEConfigError, match="colour"):
        SAEConfig.from_dict({"d_in": 4, "d_sae": 8, "arch": "relu", "colour": "red"})
    with pytest.raises(SAEConfigError, match="planet"):
        SAEConfig.from_dict({"d_in": 4, "d_sae": 8, "arch": "relu", "provenance": {"planet": "mars"}})


def test_registry_knows_every_architecture():
    expected = ["topk", "batchtopk", "relu", "jumprelu", "gated", "topk_abs", "topk_signed",
                "matryoshka_batchtopk", "matryoshka_topk"]  # fmt: skip
    assert architectures() == sorted(expected)
    for arch in architectures():
        assert get_class(arch).arch == arch
        cfg = SAEConfig(d_in=4, d_sae=8, arch=arch, k=2 if "topk" in arch else None)
        assert type(build(cfg)).arch == arch
    with pytest.raises(SAEConfigError, match="known"):
        get_class("nope")
