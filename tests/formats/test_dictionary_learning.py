"""dictionary_learning checkpoints (ae.pt state dict + config.json) convert with identical outputs.

Checkpoints mimic `t.save(ae.state_dict(), "ae.pt")` with each class's parameter names and nn.Linear
layouts, and config.json = {"trainer": trainer.config, "buffer": ...}. References follow each
class's `encode`/`decode` from the library source.
"""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from saekit.errors import SAEFormatError
from saekit.formats import load_any, load_dictionary_learning

from .conftest import D_IN, D_SAE, acts, assert_close, rand


def write_dl(folder, state, dict_class, **trainer):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "ae.pt")
    cfg = {
        "trainer": {
            "dict_class": dict_class,
            "trainer_class": "X",
            "activation_dim": D_IN,
            "dict_size": D_SAE,
            "lm_name": "EleutherAI/pythia-70m-deduped",
            "layer": 3,
            "submodule_name": "resid_post_layer_3",
            **trainer,
        },
        "buffer": {"d_submodule": D_IN, "ctx_len": 128},
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def linear_ae(seed, bias_name="bias"):
    return {
        "encoder.weight": rand(D_SAE, D_IN, seed=seed, scale=0.5),
        "encoder.bias": rand(D_SAE, seed=seed + 1, scale=0.3),
        "decoder.weight": rand(D_IN, D_SAE, seed=seed + 2, scale=0.5),
        bias_name: rand(D_IN, seed=seed + 3, scale=0.3),
    }


def lin(x, W, b=None):
    return x @ W.T + (0 if b is None else b)


def check(sae, x, f_ref, xhat_ref, what):
    f = sae.encode(x)
    assert (f != 0).any() and (f == 0).any(), "test data must exercise active and inactive latents"
    assert_close(f, f_ref, f"{what} latents")
    assert_close(sae.reconstruct(x), xhat_ref, f"{what} reconstruction")


def test_autoencoder(tmp_path):
    s = linear_ae(0)
    sae = load_any(write_dl(tmp_path / "ae", s, "AutoEncoder"))
    x = acts()
    f = torch.relu(lin(x - s["bias"], s["encoder.weight"], s["encoder.bias"]))
    check(sae, x, f, lin(f, s["decoder.weight"]) + s["bias"], "AutoEncoder")
    assert sae.arch == "relu" and sae.cfg.provenance.model == "EleutherAI/pythia-70m-deduped"
    assert sae.cfg.provenance.layer == 3 and sae.cfg.provenance.hook_point == "resid_post_layer_3"


def test_autoencoder_new_folds_uncentred_encoder(tmp_path):
    s = linear_ae(5, bias_name="decoder.bias")
    sae = load_any(write_dl(tmp_path / "n", s, "AutoEncoderNew"))
    x = acts(seed=6)
    f = torch.relu(lin(x, s["encoder.weight"], s["encoder.bias"]))
    check(sae, x, f, lin(f, s["decoder.weight"], s["decoder.bias"]), "AutoEncoderNew")


def test_topk(tmp_path):
    s = linear_ae(10, bias_name="b_dec")
    s["k"] = torch.tensor(4, dtype=torch.int)
    s["threshold"] = torch.tensor(-1.0)
    sae = load_any(write_dl(tmp_path / "t", s, "AutoEncoderTopK", k=4))
    x = acts(seed=11)
    post = torch.relu(lin(x - s["b_dec"], s["encoder.weight"], s["encoder.bias"]))
    top = post.topk(4, dim=-1, sorted=False)
    f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
    check(sae, x, f, lin(f, s["decoder.weight"]) + s["b_dec"], "AutoEncoderTopK")
    assert sae.arch == "topk" and sae.cfg.k == 4


@pytest.mark.parametrize("theta", [0.3, -1.0])
def test_batchtopk_threshold_inference(tmp_path, theta):
    s = linear_ae(20, bias_name="b_dec")
    s["k"] = torch.tensor(4, dtype=torch.int)
    s["threshold"] = torch.tensor(theta)
    folder = write_dl(tmp_path / "b", s, "BatchTopKSAE", k=4)
    if theta < 0:
        with pytest.warns(UserWarning, match="never estimated"):
            sae = load_any(folder)
    else:
        sae = load_any(folder)
    x = acts(seed=21)
    post = torch.relu(lin(x - s["b_dec"], s["encoder.weight"], s["encoder.bias"]))
    f = post * (post > s["threshold"])
    check(sae, x, f, lin(f, s["decoder.weight"]) + s["b_dec"], "BatchTopKSAE")
    assert sae.arch == "batchtopk"


def test_matryoshka_batchtopk(tmp_path):
    s = {
        "W_enc": rand(D_IN, D_SAE, seed=25, scale=0.5),
        "b_enc": rand(D_SAE, seed=26, scale=0.3),
        "W_dec": rand(D_SAE, D_IN, seed=27, scale=0.5),
        "b_dec": rand(D_IN, seed=28, scale=0.3),
        "k": torch.tensor(4, dtype=torch.int),
        "threshold": torch.tensor(0.2),
        "group_sizes": torch.tensor([8, 24]),
    }
    sae = load_any(write_dl(tmp_path / "m", s, "MatryoshkaBatchTopKSAE", k=4))
    x = acts(seed=29)
    post = torch.relu((x - s["b_dec"]) @ s["W_enc"] + s["b_enc"])
    f = post * (post > s["threshold"])
    check(sae, x, f, f @ s["W_dec"] + s["b_dec"], "Matryoshka")


def test_gated(tmp_path):
    s = {
        "decoder_bias": rand(D_IN, seed=30, scale=0.3),
        "encoder.weight": rand(D_SAE, D_IN, seed=31, scale=0.5),
        "r_mag": rand(D_SAE, seed=32, scale=0.3),
        "gate_bias": rand(D_SAE, seed=33, scale=0.3),
        "mag_bias": rand(D_SAE, seed=34, scale=0.3),
        "decoder.weight": rand(D_IN, D_SAE, seed=35, scale=0.5),
    }
    sae = load_any(write_dl(tmp_path / "g", s, "GatedAutoEncoder"))
    x = acts(seed=36)
    x_enc = lin(x - s["decoder_bias"], s["encoder.weight"])
    f = (x_enc + s["gate_bias"] > 0).float() * torch.relu(s["r_mag"].exp() * x_enc + s["mag_bias"])
    check(sae, x, f, lin(f, s["decoder.weight"]) + s["decoder_bias"], "Gated")
    assert sae.arch == "gated"


def test_jumprelu_without_b_dec_on_input(tmp_path):
    s = {
        "W_enc": rand(D_IN, D_SAE, seed=40, scale=0.5),
        "b_enc": rand(D_SAE, seed=41, scale=0.3),
        "W_dec": rand(D_SAE, D_IN, seed=42, scale=0.5),
        "b_dec": rand(D_IN, seed=43, scale=1.0),
        "threshold": rand(D_SAE, seed=44, scale=0.4).abs(),
    }
    s["threshold"][:3] = 0.0
    sae = load_any(write_dl(tmp_path / "j", s, "JumpReluAutoEncoder"))
    x = acts(seed=45)
    pre = x @ s["W_enc"] + s["b_enc"]  # apply_b_dec_to_input = False in JumpReluAutoEncoder
    f = torch.relu(pre * (pre > s["threshold"]))
    check(sae, x, f, f @ s["W_dec"] + s["b_dec"], "JumpReLU")


def test_bare_pt_file_guesses_class_and_backup_uses_norm_factor(tmp_path):
    s = linear_ae(50)
    path = tmp_path / "checkpoints" / "ae_100.pt"
    path.parent.mkdir()
    torch.save(s, path)
    sae = load_any(path)
    x = acts(seed=51)
    f = torch.relu(lin(x - s["bias"], s["encoder.weight"], s["encoder.bias"]))
    check(sae, x, f, lin(f, s["decoder.weight"]) + s["bias"], "bare .pt")
    # a mid-training backup: biases not yet scaled, inputs were divided by norm_factor during training
    nf = 3.0
    torch.save(
        {"step": 10, "ae": s, "optimizer": {"state": {}, "param_groups": []}, "norm_factor": nf},
        tmp_path / "ae.pt",
    )
    sae = load_dictionary_learning(tmp_path / "ae.pt", dict_class="AutoEncoder")
    f = torch.relu(lin(x / nf - s["bias"], s["encoder.weight"], s["encoder.bias"]))
    check(sae, x, f, (lin(f, s["decoder.weight"]) + s["bias"]) * nf, "backup")


class _Evil:
    """Unpickling this would create a file: proves the loader never runs pickled code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickle_only_file_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"encoder.weight": torch.zeros(2, 2), "payload": _Evil(marker)}, folder / "ae.pt")
    with pytest.raises(SAEFormatError, match="refusing to load.*arbitrary code"):
        load_any(folder)
    assert not marker.exists()


def test_config_disagreeing_with_weights_and_wrong_shape(tmp_path):
    s = linear_ae(60)
    with pytest.raises(SAEFormatError, match="dict_size=64"):
        load_any(write_dl(tmp_path / "a", s, "AutoEncoder", dict_size=64))
    s["decoder.weight"] = s["decoder.weight"][:, :-1]
    with pytest.raises(SAEFormatError, match=r"'decoder.weight' has shape \(8, 31\)"):
        load_any(write_dl(tmp_path / "b", s, "AutoEncoder"))


def test_missing_tensor_and_unknown_class(tmp_path):
    s = linear_ae(70, bias_name="b_dec")
    with pytest.raises(SAEFormatError, match=r"lacks tensor\(s\) \['threshold'\]"):
        load_any(write_dl(tmp_path / "a", s, "BatchTopKSAE", k=4))
    with pytest.raises(SAEFormatError, match="'PAnnealAE' is not supported"):
        load_any(write_dl(tmp_path / "b", s, "PAnnealAE"))
