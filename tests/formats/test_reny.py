"""re-n-y/sae hub folders (config.json with features/pages[/k] + model.safetensors) convert exactly.

Fixtures are written as `PyTorchModelHubMixin` writes them (init kwargs in config.json, the module's
state dict in model.safetensors); the references follow re-n-y's `autoencoder.py` math line by line,
with nn.Linear layouts (`encoder.weight [pages, features]`, `decoder.weight [features, pages]`).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from saekit.errors import SAEFormatError
from saekit.formats import detect_format, load_any, load_reny
from saekit.formats.reny import parse_hub_name

from .conftest import D_IN, D_SAE, acts, assert_close, rand


def write_reny(folder, tensors, **cfg):
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"features": D_IN, "pages": D_SAE, **cfg}))
    return folder


def linear_tensors(seed=0, gated=False):
    t = {
        "encoder.weight": rand(D_SAE, D_IN, seed=seed, scale=0.5),
        "decoder.weight": rand(D_IN, D_SAE, seed=seed + 1, scale=0.5) * torch.linspace(0.3, 3.0, D_SAE),
    }
    if gated:
        t.update(
            decoder_bias=rand(D_IN, seed=seed + 2, scale=0.3),
            r_mag=rand(D_SAE, seed=seed + 3, scale=0.3),
            gate_bias=rand(D_SAE, seed=seed + 4, scale=0.3),
            mag_bias=rand(D_SAE, seed=seed + 5, scale=0.3),
        )
    else:
        t.update({"encoder.bias": rand(D_SAE, seed=seed + 2, scale=0.3), "bias": rand(D_IN, seed=seed + 3)})
    return t


def enc(t, x, bias="bias"):
    return (x - t[bias]) @ t["encoder.weight"].T + t.get("encoder.bias", 0.0)


def dec(t, f, bias="bias"):
    return f @ t["decoder.weight"].T + t[bias]


def test_topk_matches_reference(tmp_path):
    t = linear_tensors()
    sae = load_any(write_reny(tmp_path / "cc3m-text-topk-lr-3e-4-k-4-expansion-4", t, k=4))
    assert sae.arch == "topk" and sae.cfg.k == 4
    x = acts()
    post = F.relu(enc(t, x))
    top = post.topk(4, dim=-1, sorted=False)
    f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
    assert_close(sae.encode(x), f, "topk latents")
    assert_close(sae.reconstruct(x), dec(t, f), "topk reconstruction")


def test_standard_sae_decoder_norm_scaling(tmp_path):
    """Standard: latents scaled by ||decoder column||, divided back out before decoding."""
    t = linear_tensors(seed=3)
    sae = load_any(write_reny(tmp_path / "std", t))
    assert sae.arch == "relu"
    norms = t["decoder.weight"].norm(dim=0, keepdim=True)
    x = acts(seed=4)
    f = F.relu(enc(t, x)) * norms
    assert_close(sae.encode(x), f, "scaled latents")
    assert_close(sae.reconstruct(x), dec(t, f / norms), "reconstruction")
    assert_close(sae.decode(f), dec(t, f / norms), "decode of the library's own latents")


def test_gated_with_decoder_norm_scaling(tmp_path):
    t = linear_tensors(seed=5, gated=True)
    sae = load_any(write_reny(tmp_path / "gated", t))
    assert sae.arch == "gated"
    norms = t["decoder.weight"].norm(dim=0, keepdim=True)
    x = acts(seed=6)
    x_enc = (x - t["decoder_bias"]) @ t["encoder.weight"].T
    gate = (x_enc + t["gate_bias"] > 0).float()
    f = gate * F.relu(t["r_mag"].exp() * x_enc + t["mag_bias"]) * norms
    assert_close(sae.encode(x), f, "gated latents")
    assert_close(sae.reconstruct(x), dec(t, f / norms, "decoder_bias"), "gated reconstruction")


def test_jumprelu(tmp_path):
    t = linear_tensors(seed=7)
    t["logthres"] = rand(D_SAE, seed=8, scale=0.5) - 1.0
    sae = load_any(write_reny(tmp_path / "jump", t, bandwidth=0.002, jumpthreshold=0.001))
    assert sae.arch == "jumprelu" and sae.cfg.jumprelu_bandwidth == 0.002
    x = acts(seed=9)
    pre = F.relu(enc(t, x))
    f = pre * (pre > t["logthres"].exp())
    assert f.count_nonzero() > 0 and (f == 0).any()
    assert_close(sae.encode(x), f, "jumprelu latents")
    assert_close(sae.reconstruct(x), dec(t, f), "jumprelu reconstruction")


def test_hub_names_become_provenance(tmp_path):
    assert parse_hub_name(["cc3m-text-topk-lr-3e-4-k-4-expansion-4"])["tower"] == "text"
    assert parse_hub_name(["cc3m-vision-standard-lr-1e-4-expansion-8"])["tower"] == "vision"
    facts = parse_hub_name(["flux-sae", "transformer_blocks.18-1"])
    assert facts == {
        "hook_point": "transformer_blocks.18",
        "layer": 18,
        "stream": "1",
        "source_name": "transformer_blocks.18-1",
    }
    assert parse_hub_name(["single_transformer_blocks.37"])["hook_point"] == "single_transformer_blocks.37"
    sae = load_any(write_reny(tmp_path / "transformer_blocks.18-1", linear_tensors(), k=4))
    p = sae.cfg.provenance
    assert (p.hook_point, p.layer, p.stream, p.source_format) == ("transformer_blocks.18", 18, "1", "reny")


def test_detected_apart_from_native_and_errors(tmp_path):
    folder = write_reny(tmp_path / "r", linear_tensors(), k=4)
    assert detect_format(folder) == ("reny", folder)
    assert detect_format(folder / "model.safetensors") == ("reny", folder)
    bad = write_reny(tmp_path / "bad", linear_tensors(), k=4)
    (bad / "config.json").write_text(json.dumps({"features": D_IN + 1, "pages": D_SAE, "k": 4}))
    with pytest.raises(SAEFormatError, match=r"encoder.weight.*\(32, 8\).*features=9"):
        load_reny(bad)
    t = linear_tensors()
    del t["bias"]
    with pytest.raises(SAEFormatError, match="bias"):
        load_reny(write_reny(tmp_path / "nobias", t, k=4))
    with pytest.raises(SAEFormatError, match="k=99 exceeds"):
        load_reny(write_reny(tmp_path / "bigk", linear_tensors(), k=99))
