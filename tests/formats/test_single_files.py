"""Single-file formats: gytdau's CLIP SAE `.pth`, openai/sparse_autoencoder `.pt`, detection by content.

References follow each library's documented math, written here from the tensor names:
- gytdau: `relu(encoder(x) + enc_bias)`, `decoder(f) + dec_bias` (no pre-encoder bias subtraction).
- openai: `LN(x)` for TopK checkpoints (`mu`, unbiased `std` of `x - mu`, `/(std + 1e-5)`),
  `act(encoder(x - pre_bias) + latent_bias)`, `(decoder(f) + pre_bias) * std + mu`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saekit.errors import SAEFormatError
from saekit.formats import detect_format, load_any, load_gytdau, load_openai

from .conftest import D_IN, D_SAE, acts, assert_close, rand


class Payload:
    """Stands for any pickled object a weights-only load must refuse."""


def gytdau_state(seed=0):
    return {
        "encoder.weight": rand(D_SAE, D_IN, seed=seed, scale=0.5),
        "enc_bias": rand(D_SAE, seed=seed + 1, scale=0.3),
        "decoder.weight": rand(D_IN, D_SAE, seed=seed + 2, scale=0.5),
        "dec_bias": rand(D_IN, seed=seed + 3, scale=0.5),
    }


def test_gytdau_matches_reference(tmp_path):
    s = gytdau_state()
    path = tmp_path / "sparse_autoencoder_128.pth"
    torch.save(s, path)
    assert detect_format(path) == ("gytdau", path)
    assert detect_format(tmp_path)[0] == "gytdau"  # a folder holding only that file
    sae = load_any(path)
    x = acts()
    f = F.relu(x @ s["encoder.weight"].T + s["enc_bias"])
    assert sae.arch == "relu" and sae.cfg.provenance.source_format == "gytdau"
    assert_close(sae.encode(x), f, "gytdau latents")
    assert_close(sae.reconstruct(x), f @ s["decoder.weight"].T + s["dec_bias"], "gytdau reconstruction")


def test_gytdau_refuses_pickled_objects_and_missing_tensors(tmp_path):
    path = tmp_path / "evil.pth"  # an arbitrary class instance: needs full unpickling
    torch.save({"encoder.weight": torch.zeros(2, 2), "obj": Payload()}, path)
    with pytest.raises(SAEFormatError, match="refusing to load.*arbitrary code"):
        load_gytdau(path)
    s = gytdau_state()
    del s["dec_bias"]
    torch.save(s, tmp_path / "partial.pth")
    with pytest.raises(SAEFormatError, match="dec_bias"):
        load_gytdau(tmp_path / "partial.pth")


def openai_state(seed=0, activation="TopK", k=4, post="ReLU", tied=False):
    s = {
        "pre_bias": rand(D_IN, seed=seed, scale=0.3),
        "encoder.weight": rand(D_SAE, D_IN, seed=seed + 1, scale=0.5),
        "latent_bias": rand(D_SAE, seed=seed + 2, scale=0.3),
        "stats_last_nonzero": torch.zeros(D_SAE, dtype=torch.long),
        "latents_activation_frequency": torch.ones(D_SAE),
        "latents_mean_square": torch.zeros(D_SAE),
        "activation": activation,
    }
    if not tied:
        s["decoder.weight"] = rand(D_IN, D_SAE, seed=seed + 3, scale=0.5)
    if activation == "TopK":
        s["activation_state_dict"] = {"k": k, "postact_fn": post}
    return s


def openai_ref(s, x):
    """openai/sparse_autoencoder Autoencoder.forward, from its model.py math."""
    normalize = s["activation"] == "TopK"
    mu = std = None
    if normalize:
        mu = x.mean(-1, keepdim=True)
        xc = x - mu
        std = xc.std(-1, keepdim=True)
        x = xc / (std + 1e-5)
    pre = (x - s["pre_bias"]) @ s["encoder.weight"].T + s["latent_bias"]
    if s["activation"] == "TopK":
        top = torch.topk(pre, k=s["activation_state_dict"]["k"], dim=-1)
        vals = top.values.relu() if s["activation_state_dict"]["postact_fn"] == "ReLU" else top.values
        f = torch.zeros_like(pre).scatter_(-1, top.indices, vals)
    else:
        f = pre.relu()
    w_dec_T = s["decoder.weight"].T if "decoder.weight" in s else s["encoder.weight"]
    out = f @ w_dec_T + s["pre_bias"]
    return f, (out * std + mu if normalize else out)


@pytest.mark.parametrize(
    "kw",
    [{}, {"post": "Identity"}, {"activation": "ReLU"}, {"tied": True}],
    ids=["topk", "id", "relu", "tied"],
)
def test_openai_matches_reference(tmp_path, kw):
    s = openai_state(**kw)
    path = tmp_path / "v5_32k_layer_8.pt"
    torch.save(s, path)
    assert detect_format(path) == ("openai", path)
    sae = load_any(path)
    x = acts(seed=5) * 7.0 + 3.0  # offset and scale: per-row LN must matter
    f, out = openai_ref(s, x)
    assert sae.cfg.normalization == ("layer_norm" if s["activation"] == "TopK" else "none")
    assert_close(sae.encode(x), f, "openai latents")
    assert_close(sae.reconstruct(x), out, "openai reconstruction")
    if kw.get("post") == "Identity":
        assert sae.arch == "topk_signed"


def test_openai_refusals(tmp_path):
    s = openai_state(activation="Identity")
    torch.save(s, tmp_path / "dense.pt")
    with pytest.raises(SAEFormatError, match="'Identity' has no native equivalent"):
        load_openai(tmp_path / "dense.pt")
    s = openai_state(post="Sigmoid")
    torch.save(s, tmp_path / "sig.pt")
    with pytest.raises(SAEFormatError, match="postact_fn 'Sigmoid'"):
        load_openai(tmp_path / "sig.pt")


def test_openai_forward_training_is_refused_with_the_reason(tmp_path):
    torch.save(openai_state(), tmp_path / "a.pt")
    sae = load_any(tmp_path / "a.pt")
    with pytest.raises(Exception, match="layer_norm.*encode\\(x\\) and decode\\(latents, x\\)"):
        sae(acts())


def test_unknown_file_lists_formats_and_its_tensors(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"alpha": torch.zeros(3), "beta": torch.zeros(2)}, path)
    with pytest.raises(SAEFormatError) as info:
        load_any(path)
    msg = str(info.value)
    assert "alpha" in msg and "beta" in msg and "pre_bias" in msg and "enc_bias" in msg and "saev" in msg
