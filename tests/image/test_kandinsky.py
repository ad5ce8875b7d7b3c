"""`saekit steer` on Kandinsky 2.2 (prior + decoder): a CLIP image-embedding SAE edits the prior's
image embedding before the decoder, on tiny random-weight pipelines saved as folders (conftest.py).

References: the unsteered image is the plain diffusers prior -> decoder run with the same seed; the
edited embedding is `e + (s − f_j) W_dec_j / input_scale`, computed from the SAE's weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from saekit.cli import main as cli
from saekit.errors import ModelLoadError, ShapeError, SteeringError
from saekit.sae import SAEConfig, build
from saekit.sae.config import Provenance
from saekit.sae.io import save_sae

from .conftest import EMBED

SIDE = 64
FAST = ["--num-inference-steps", "2", "--prior-steps", "2", "--height", str(SIDE), "--width", str(SIDE)]
COMMON = [*FAST, "--dtype", "float32", "--device", "cpu", "--quiet", "--prompt", "a red cat"]


@pytest.fixture(scope="module")
def sae_dir(kandinsky_folders, tmp_path_factory):
    root = tmp_path_factory.mktemp("k_sae")
    cfg = SAEConfig(d_in=EMBED, d_sae=96, arch="topk", k=8)
    save_sae(build(cfg, seed=4), root / "plain")
    prov = Provenance(model=str(kandinsky_folders / "decoder"))
    save_sae(build(cfg.replace(provenance=prov), seed=4), root / "with_provenance")
    save_sae(build(SAEConfig(d_in=EMBED // 2, d_sae=64, arch="relu"), seed=4), root / "narrow")
    return root


def _halves(path):
    a = np.asarray(Image.open(path).convert("RGB"))
    return a[:, : a.shape[1] // 2], a[:, a.shape[1] // 2 :]


@pytest.fixture(scope="module")
def pipes(kandinsky_folders):
    from saekit.models.kandinsky import load_kandinsky

    k = kandinsky_folders
    return load_kandinsky(str(k / "decoder"), str(k / "prior"), dtype="float32", device="cpu")


def _reference(pipes, prompt="a red cat", edit=None):
    """Plain diffusers calls: prior then decoder, seed 0, optionally editing the embedding by hand."""
    out = pipes.prior(
        prompt, negative_prompt="", num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    emb = out.image_embeds if edit is None else edit(out.image_embeds)
    img = pipes.decoder(
        image_embeds=emb,
        negative_image_embeds=out.negative_image_embeds,
        height=SIDE,
        width=SIDE,
        num_inference_steps=2,
        guidance_scale=4.0,
        generator=torch.Generator().manual_seed(0),
        output_type="pil",
    ).images[0]
    return out.image_embeds, np.asarray(img.convert("RGB"))


def test_steer_kandinsky_side_by_side_against_plain_diffusers(kandinsky_folders, sae_dir, pipes, tmp_path):
    from saekit.steer.image.run import steer_image

    k = kandinsky_folders
    args = [
        "steer",
        "--model",
        str(k / "decoder"),
        "--prior",
        str(k / "prior"),
        "--sae",
        str(sae_dir / "plain"),
    ]
    out = tmp_path / "k.png"
    assert cli([*args, *COMMON, "--feature", "5", "--strength", "40", "--out", str(out)]) == 0
    un, st = _halves(out)
    emb, ref_un = _reference(pipes)
    assert un.shape == (SIDE, SIDE, 3) and np.array_equal(un, ref_un)
    assert (un != st).any()
    # the steered half is the decoder run on the hand-computed edit (set f_5 := 40, error kept)
    sae = build(SAEConfig(d_in=EMBED, d_sae=96, arch="topk", k=8), seed=4)
    f5 = sae.encode(emb)[0, 5]
    _, ref_st = _reference(pipes, edit=lambda e: e + (40.0 - f5) * sae.W_dec[5].detach())
    assert np.abs(st.astype(int) - ref_st.astype(int)).max() <= 1  # embeds agree to rounding
    # a no-op edit (set to the current value; add 0) reproduces the unsteered image exactly
    for method, strength in (("clamp", "current"), ("boost_active", "0")):
        cfg = _cfg(k, sae_dir / "plain", feature=(5,), prompt="a red cat", method=method, strength=strength)
        r = steer_image(dataclasses.replace(cfg, out=tmp_path / "z.png"), pipe=pipes)
        z_un, z_st = (np.asarray(i.convert("RGB")) for i in (r.unsteered, r.steered))
        assert np.array_equal(z_un, z_st) and np.array_equal(z_un, ref_un)
        assert np.array_equal(_halves(tmp_path / "z.png")[1], ref_un)


def test_kandinsky_routed_by_the_sae_provenance(kandinsky_folders, sae_dir, pipes, tmp_path, monkeypatch):
    import saekit.models.kandinsky as kandinsky
    from saekit.steer.image.run import sae_provenance_model, steer_target

    prov = sae_dir / "with_provenance"
    assert sae_provenance_model(prov) == str(kandinsky_folders / "decoder")  # nested under "config"
    assert steer_target(None, str(prov)) == "image"
    assert steer_target(None, str(sae_dir / "plain")) == "lm"  # no provenance model: the LM default
    asked = []
    monkeypatch.setattr(kandinsky, "load_kandinsky", lambda *a, **kw: asked.append(a) or pipes)
    out = tmp_path / "p.png"
    args = ["steer", "--sae", str(prov), "--prior", str(kandinsky_folders / "prior"), *COMMON]
    assert cli([*args, "--feature", "3", "--strength", "30", "--out", str(out)]) == 0
    assert asked == [(str(kandinsky_folders / "decoder"), str(kandinsky_folders / "prior"))]
    un, st = _halves(out)
    assert np.array_equal(un, _reference(pipes)[1]) and (un != st).any()


def _cfg(k, sae, **kw):
    from saekit.steer.image.run import ImageSteerConfig

    base = dict(
        sae=str(sae),
        model=str(k / "decoder"),
        prior=str(k / "prior"),
        feature=(1,),
        strength="10",
        prompt="a dog",
        num_inference_steps=2,
        prior_steps=2,
        height=SIDE,
        width=SIDE,
        dtype="float32",
        device="cpu",
        quiet=True,
    )
    return ImageSteerConfig(**{**base, **kw})


def test_kandinsky_refusals(kandinsky_folders, sae_dir, pipes, tmp_path):
    from saekit.steer.image.run import steer_image

    k = kandinsky_folders
    with pytest.raises(ShapeError, match=r"size 32 but the SAE has d_in=16"):
        steer_image(_cfg(k, sae_dir / "narrow", out=tmp_path / "n.png"), pipe=pipes)
    assert not (tmp_path / "n.png").exists()
    with pytest.raises(ModelLoadError, match="swapped"):
        steer_image(_cfg(k, sae_dir / "plain", model=str(k / "prior"), prior=str(k / "decoder")))
    with pytest.raises(SteeringError, match="is the Kandinsky 2.2 prior"):
        steer_image(_cfg(k, sae_dir / "plain", model=str(k / "prior"), prior=None))
    with pytest.raises(ModelLoadError, match="needs its prior"):
        steer_image(_cfg(k, sae_dir / "plain", prior=None))
    with pytest.raises(SteeringError, match="--hook-point, --steps: FLUX-only"):
        steer_image(_cfg(k, sae_dir / "plain", hook_point="transformer_blocks.0", steps="0-1"))
    with pytest.raises(SteeringError, match="clamp .*ablate .*boost_active"):
        steer_image(_cfg(k, sae_dir / "plain", method="additive"))
    with pytest.raises(SteeringError, match="no calibration.*or give an absolute latent value"):
        steer_image(_cfg(k, sae_dir / "plain", strength="4max"))
    with pytest.raises(SteeringError, match="needs --prompt"):
        steer_image(_cfg(k, sae_dir / "plain", prompt=None))


def test_kandinsky_is_recognised_by_folder_class_and_by_name(kandinsky_folders):
    from saekit.models.load import model_kind, pipeline_family

    k = kandinsky_folders
    assert pipeline_family(str(k / "decoder")) == "kandinsky_decoder"
    assert pipeline_family(str(k / "prior")) == "kandinsky_prior"
    assert pipeline_family("kandinsky-community/kandinsky-2-2-decoder") == "kandinsky_decoder"
    assert pipeline_family("kandinsky-community/kandinsky-2-2-prior") == "kandinsky_prior"
    assert pipeline_family("black-forest-labs/FLUX.1-schnell") == "flux"
    assert model_kind("kandinsky-community/kandinsky-2-2-decoder") == "diffusers"
