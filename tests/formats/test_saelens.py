"""SAELens folders (cfg.json + sae_weights.safetensors) convert to SAEs with identical outputs.

Checkpoints are written the way SAELens' `save_model` writes them (state dict names, our layout,
`cfg.json` with `architecture` and `metadata`); the reference follows SAELens' encode/decode math.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from saekit.errors import SAEFormatError, ShapeError
from saekit.formats import load_any, load_saelens
from saekit.sae import load_sae

from .conftest import BATCH, D_IN, D_SAE, acts, assert_close, rand


def write_saelens(folder, tensors, **cfg):
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "sae_weights.safetensors"))
    base = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": "6.5.1",
            "model_name": "gpt2",
            "hook_name": "blocks.3.hook_resid_pre",
        },
    }
    base.update(cfg)
    (folder / "cfg.json").write_text(json.dumps(base))
    return folder


def base_tensors(seed=0):
    return {
        "W_enc": rand(D_IN, D_SAE, seed=seed, scale=0.5),
        "b_enc": rand(D_SAE, seed=seed + 1, scale=0.3),
        "W_dec": rand(D_SAE, D_IN, seed=seed + 2, scale=0.5),
        "b_dec": rand(D_IN, seed=seed + 3, scale=0.3),
    }


# -- reference: SAELens math -----------------------------------------------------------------------
def ref_sae_in(t, x, apply_b_dec=True):
    return x - t["b_dec"] * apply_b_dec


def ref_topk(h, k):
    vals, idx = torch.topk(h, k, dim=-1, sorted=False)
    return torch.zeros_like(h).scatter(-1, idx, vals.relu())


def ref_encode(arch, t, x, *, apply_b_dec=True, k=None, rescale=False):
    s = ref_sae_in(t, x, apply_b_dec)
    if arch == "gated":
        gate = (s @ t["W_enc"] + t["b_gate"] > 0).float()
        return gate * (s @ (t["W_enc"] * t["r_mag"].exp()) + t["b_mag"]).relu()
    h = s @ t["W_enc"] + t["b_enc"]
    if arch == "standard":
        return h.relu()
    if arch == "jumprelu":
        return h.relu() * (h > t["threshold"]).float()
    if rescale:
        h = h * t["W_dec"].norm(dim=-1)
    return ref_topk(h, k)


def ref_decode(t, f, rescale=False):
    if rescale:
        f = f / t["W_dec"].norm(dim=-1)
    return f @ t["W_dec"] + t["b_dec"]


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "gated"])
def test_architectures_match_reference(tmp_path, arch, apply_b_dec):
    t = base_tensors()
    extra = {}
    if arch == "gated":
        t["b_gate"] = t.pop("b_enc")
        t["r_mag"] = rand(D_SAE, seed=7, scale=0.3)
        t["b_mag"] = rand(D_SAE, seed=8, scale=0.3)
    if arch == "jumprelu":  # mix of positive, zero and negative thresholds
        t["threshold"] = rand(D_SAE, seed=9, scale=0.5).abs()
        t["threshold"][:4] = 0.0
        t["threshold"][4:6] = -0.2
    if arch == "topk":
        extra["k"] = 5
    folder = write_saelens(tmp_path / arch, t, architecture=arch, apply_b_dec_to_input=apply_b_dec, **extra)
    sae = load_any(folder)
    assert sae.arch == {"standard": "relu"}.get(arch, arch)
    x = acts()
    f_ref = ref_encode(arch, t, x, apply_b_dec=apply_b_dec, k=extra.get("k"))
    f = sae.encode(x)
    assert_close(f, f_ref, f"{arch} latents")
    assert (f != 0).sum() > 0 and (f == 0).sum() > 0, (
        "test data must exercise both active and inactive latents"
    )
    assert_close(sae.decode(f), ref_decode(t, f_ref), f"{arch} reconstruction")
    assert_close(sae.reconstruct(x), ref_decode(t, f_ref), f"{arch} reconstruct")
    assert sae.cfg.provenance.model == "gpt2" and sae.cfg.provenance.hook_point == "blocks.3.hook_resid_pre"
    assert sae.cfg.provenance.layer == 3


def test_topk_rescale_acts_by_decoder_norm_is_folded(tmp_path):
    t = base_tensors(seed=20)
    t["W_dec"] = t["W_dec"] * rand(D_SAE, seed=21).abs()[:, None]  # very uneven decoder norms
    folder = write_saelens(tmp_path / "s", t, architecture="topk", k=4, rescale_acts_by_decoder_norm=True)
    sae = load_saelens(folder)
    x = acts(seed=22)
    f_ref = ref_encode("topk", t, x, k=4, rescale=True)
    plain = ref_encode("topk", t, x, k=4, rescale=False)
    assert not torch.equal((f_ref != 0), (plain != 0)), "rescaling should change which latents win"
    assert_close(sae.encode(x), f_ref, "latents")
    assert_close(sae.reconstruct(x), ref_decode(t, f_ref, rescale=True), "reconstruction")
    assert sae.encode_sparse(x).values.shape == (BATCH, 4)


def test_pre_6_config_topk_via_activation_fn_kwargs_and_finetuning_scale(tmp_path):
    t = base_tensors(seed=30)
    s = rand(D_SAE, seed=31).abs() + 0.5
    t["scaling_factor"] = s
    folder = tmp_path / "old"
    folder.mkdir()
    save_file(t, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(
        json.dumps(
            {
                "d_in": D_IN,
                "d_sae": D_SAE,
                "dtype": "torch.float32",
                "activation_fn_str": "topk",
                "activation_fn_kwargs": {"k": 6},
                "hook_point": "blocks.5.hook_resid_post",
                "hook_layer": 5,
                "model_name": "pythia-70m",
                "finetuning_scaling_factor": True,
                "normalize_activations": False,
                "sae_lens_training_version": "3.0.0",
            }
        )
    )
    sae = load_any(folder)
    assert sae.arch == "topk" and sae.cfg.k == 6
    x = acts(seed=32)
    f_ref = ref_encode("topk", t, x, k=6)
    assert_close(sae.encode(x), f_ref, "latents")
    assert_close(
        sae.reconstruct(x), (f_ref * s) @ t["W_dec"] + t["b_dec"], "finetuning-scaled reconstruction"
    )
    assert sae.cfg.provenance.hook_point == "blocks.5.hook_resid_post" and sae.cfg.provenance.layer == 5


def test_expected_average_scaling_factor_argument(tmp_path):
    t = base_tensors(seed=40)
    folder = write_saelens(
        tmp_path / "n", t, architecture="standard", normalize_activations="expected_average_only_in"
    )
    c = 0.37
    sae = load_any(folder, scaling_factor=c)
    x = acts(seed=41)
    # SAELens after fold_activation_norm_scaling_factor(c): W_enc*c, W_dec/c, b_dec/c on raw inputs.
    folded = {"W_enc": t["W_enc"] * c, "b_enc": t["b_enc"], "W_dec": t["W_dec"] / c, "b_dec": t["b_dec"] / c}
    f_ref = ref_encode("standard", folded, x)
    assert_close(sae.encode(x), f_ref, "latents")
    assert_close(sae.reconstruct(x), ref_decode(folded, f_ref), "reconstruction")
    assert math.isclose(float(sae.input_scale), c, rel_tol=1e-6)
    assert sae.cfg.normalization == "expected_norm"


def test_expected_average_without_factor_warns_and_uses_scaler_file_when_present(tmp_path):
    t = base_tensors(seed=50)
    folder = write_saelens(
        tmp_path / "n", t, architecture="standard", normalize_activations="expected_average_only_in"
    )
    with pytest.warns(UserWarning, match="#381"):
        sae = load_saelens(folder)
    assert float(sae.input_scale) == 1.0
    (folder / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 2.5}))
    assert math.isclose(float(load_saelens(folder).input_scale), 2.5)


def test_layer_norm_matches_saelens_per_row_math(tmp_path):
    """SAELens layer_norm: mu = mean, std = unbiased std of x - mu, x' = (x - mu)/(std + 1e-5), the
    output restored as out * std + mu. Inputs with a large per-row offset and scale make it matter."""
    t = base_tensors(seed=5)
    folder = write_saelens(tmp_path / "n", t, architecture="topk", k=5, normalize_activations="layer_norm")
    sae = load_saelens(folder)
    assert sae.cfg.normalization == "layer_norm"
    x = acts(seed=6) * torch.linspace(0.5, 40.0, BATCH)[:, None] + torch.linspace(-30, 30, BATCH)[:, None]
    mu = x.mean(-1, keepdim=True)
    std = (x - mu).std(-1, keepdim=True)
    f = ref_encode("topk", t, (x - mu) / (std + 1e-5), k=5)
    assert_close(sae.encode(x), f, "layer_norm latents")
    assert_close(sae.decode(sae.encode(x), x), ref_decode(t, f) * std + mu, "layer_norm reconstruction")
    assert_close(sae.reconstruct(x), ref_decode(t, f) * std + mu, "reconstruct")
    with pytest.raises(ShapeError, match="decode\\(latents, x\\)"):
        sae.decode(f)  # without the rows, the per-row mean/std cannot be restored


def test_constant_norm_rescale_is_refused(tmp_path):
    folder = write_saelens(
        tmp_path / "n", base_tensors(), architecture="standard", normalize_activations="constant_norm_rescale"
    )
    with pytest.raises(SAEFormatError, match="constant_norm_rescale.*cannot be converted exactly"):
        load_saelens(folder)


def test_converted_jumprelu_survives_native_save_load(tmp_path):
    t = base_tensors(seed=60)
    t["threshold"] = torch.zeros(D_SAE)  # all-zero thresholds: log must stay finite
    sae = load_any(write_saelens(tmp_path / "j", t, architecture="jumprelu"))
    assert torch.isfinite(sae.log_threshold).all()
    sae.save(tmp_path / "native")
    again = load_sae(tmp_path / "native")
    x = acts(seed=61)
    assert_close(again.encode(x), ref_encode("jumprelu", t, x), "latents after native round trip")


def test_batchtopk_training_checkpoint_uses_its_threshold(tmp_path):
    t = base_tensors(seed=70)
    t["topk_threshold"] = torch.tensor(0.4, dtype=torch.float64)
    sae = load_any(write_saelens(tmp_path / "b", t, architecture="batchtopk", k=4.0))
    x = acts(seed=71)
    h = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    f_ref = h.relu() * (h > 0.4)  # what SAELens saves for inference (jumprelu with this threshold)
    assert sae.arch == "batchtopk" and sae.cfg.k == 4
    assert_close(sae.encode(x), f_ref, "latents")


def test_missing_tensor_named(tmp_path):
    t = base_tensors()
    del t["W_dec"]
    with pytest.raises(SAEFormatError, match="W_dec"):
        load_saelens(write_saelens(tmp_path / "m", t, architecture="standard"))


def test_wrong_shape_named(tmp_path):
    t = base_tensors()
    t["b_enc"] = torch.zeros(D_SAE + 1)
    with pytest.raises(SAEFormatError, match=r"'b_enc'.*\(33,\).*\(32,\)"):
        load_saelens(write_saelens(tmp_path / "w", t, architecture="standard"))


def test_unsupported_architecture_lists_supported(tmp_path):
    with pytest.raises(SAEFormatError, match="'clt' is not supported; supported: standard"):
        load_saelens(write_saelens(tmp_path / "t", base_tensors(), architecture="clt"))
