"""VSAETopK (a dictionary_learning fork): `ae.pt` + config.json with dict_class VSAETopK.

Reference from its `encode(training=False)` / `decode`: `z = encoder(x')` (the mean; the variance
encoder is unused at inference), keep the k entries of z largest in |z| WITH their sign, decode with
`decoder`. use_april_update_mode=True: `x' = x`, the bias lives in `decoder.bias`; False: `x' = x - bias`,
decode adds `bias`. Negative latents are active latents.
"""

from __future__ import annotations

import pytest
import torch

from saekit.errors import SAEFormatError
from saekit.formats import detect_format, load_any

from .conftest import D_IN, D_SAE, acts, assert_close, rand
from .test_dictionary_learning import write_dl


def vsae_state(seed=0, april=True, var=False, k=4):
    s = {
        "encoder.weight": rand(D_SAE, D_IN, seed=seed, scale=0.5),
        "encoder.bias": rand(D_SAE, seed=seed + 1, scale=0.3),
        "decoder.weight": rand(D_IN, D_SAE, seed=seed + 2, scale=0.5),
        ("decoder.bias" if april else "bias"): rand(D_IN, seed=seed + 3, scale=0.5),
        "k": torch.tensor(k),
    }
    if var:
        s["var_encoder.weight"] = rand(D_SAE, D_IN, seed=seed + 4)
        s["var_encoder.bias"] = rand(D_SAE, seed=seed + 5)
    return s


def vsae_ref(s, x, k=4):
    april = "decoder.bias" in s
    xp = x if april else x - s["bias"]
    z = xp @ s["encoder.weight"].T + s["encoder.bias"]
    idx = z.abs().topk(k, dim=-1, sorted=False).indices
    f = torch.zeros_like(z).scatter_(-1, idx, z.gather(-1, idx))
    out = f @ s["decoder.weight"].T + (s["decoder.bias"] if april else s["bias"])
    return f, out


@pytest.mark.parametrize("april", [True, False])
@pytest.mark.parametrize("var", [False, True])
def test_vsae_topk_matches_reference(tmp_path, april, var):
    s = vsae_state(seed=3, april=april, var=var)
    folder = write_dl(tmp_path / "v", s, "VSAETopK", k=4, use_april_update_mode=april, var_flag=int(var))
    sae = load_any(folder)
    assert sae.arch == "topk_abs" and sae.signed_latents and sae.cfg.k == 4
    x = acts(seed=5)
    f, out = vsae_ref(s, x)
    assert (f < 0).any(), "the fixture must select negative latents"
    assert_close(sae.encode(x), f, "VSAETopK latents")
    assert_close(sae.reconstruct(x), out, "VSAETopK reconstruction")
    assert int((sae.encode(x) != 0).sum(-1).max()) == 4


def test_vsae_detected_without_config_and_bias_mode_mismatch_refused(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(vsae_state(april=False), path)
    assert detect_format(path) == ("dictionary_learning", path)
    sae = load_any(path)  # keys alone: encoder.*, decoder.weight, bias, k
    assert sae.arch == "topk_abs"
    folder = write_dl(tmp_path / "m", vsae_state(april=True), "VSAETopK", k=4, use_april_update_mode=False)
    with pytest.raises(SAEFormatError, match="use_april_update_mode=False.*decoder.bias"):
        load_any(folder)
