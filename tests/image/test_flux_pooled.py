"""FLUX steered through its pooled CLIP prompt embedding with a CLIP-text SAE, from a text prompt.

The tiny FluxPipeline here has offline text towers (conftest.py), so `--prompt` goes through FLUX's own
`encode_prompt`; the SAE then edits `pooled_prompt_embeds` before the denoising loop. References: the
plain pipeline called with the prompt, and the pipeline called with a hand-edited pooled vector."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from saekit.cli import main as cli
from saekit.errors import ShapeError
from saekit.sae import SAEConfig, build
from saekit.sae.io import save_sae

from .conftest import EMBED, tiny_flux_with_text_encoders

SIDE = 16
ARGS = ["--num-inference-steps", "2", "--height", str(SIDE), "--width", str(SIDE), "--dtype", "float32"]


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux_text")
    tiny_flux_with_text_encoders(root).save_pretrained(root / "flux")
    save_sae(build(SAEConfig(d_in=EMBED, d_sae=64, arch="topk", k=8), seed=5), root / "sae")
    save_sae(build(SAEConfig(d_in=EMBED + 8, d_sae=64, arch="topk", k=8), seed=5), root / "wide")
    return root


def _halves(path):
    a = np.asarray(Image.open(path).convert("RGB"))
    return a[:, : a.shape[1] // 2], a[:, a.shape[1] // 2 :]


def _plain(pipe, **kw):
    out = pipe(
        num_inference_steps=2,
        height=SIDE,
        width=SIDE,
        guidance_scale=3.5,
        output_type="pil",
        generator=torch.Generator().manual_seed(0),
        **kw,
    )
    return np.asarray(out.images[0].convert("RGB")).astype(int)


def test_pooled_clip_edit_from_a_text_prompt(flux_dir, tmp_path):
    from saekit.models import load_model
    from saekit.steer.image.run import steer_image

    base = ["steer", "--model", str(flux_dir / "flux"), "--sae", str(flux_dir / "sae"), "--prompt", "a cat"]
    base += [*ARGS, "--device", "cpu", "--quiet", "--conditioning", "pooled", "--feature", "4"]
    assert cli([*base, "--strength", "current", "--out", str(tmp_path / "z.png")]) == 0
    z_un, z_st = _halves(tmp_path / "z.png")
    assert np.array_equal(z_un, z_st)
    pipe = load_model(str(flux_dir / "flux"), dtype="float32", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    # the unsteered half is what FLUX makes of the prompt itself (encode_prompt inside the pipeline)
    assert np.abs(z_un.astype(int) - _plain(pipe, prompt="a cat")).max() <= 1
    cfg = _pooled_cfg(flux_dir, tmp_path / "s.png", feature=(4,), strength="25", num_inference_steps=2)
    r = steer_image(cfg, pipe=pipe)
    un, st = (np.asarray(i.convert("RGB")) for i in (r.unsteered, r.steered))
    assert np.array_equal(un, z_un) and (st != un).any()
    # the steered image: pooled vector moved by (25 − f_4) W_dec_4 by hand, T5 embeds untouched
    pe, pooled, _ = pipe.encode_prompt(prompt="a cat", prompt_2=None)
    sae = build(SAEConfig(d_in=EMBED, d_sae=64, arch="topk", k=8), seed=5)
    moved = pooled + (25.0 - sae.encode(pooled)[0, 4]) * sae.W_dec[4].detach()
    assert np.abs(st.astype(int) - _plain(pipe, prompt_embeds=pe, pooled_prompt_embeds=moved)).max() <= 1
    # the text-token embeddings (T5 width 32 here) can be edited the same way
    r = steer_image(dataclasses.replace(cfg, conditioning="text", out=tmp_path / "t.png"), pipe=pipe)
    assert (np.asarray(r.steered) != un).any() and np.array_equal(np.asarray(r.unsteered), un)


def _pooled_cfg(flux_dir, out, sae: str = "sae", **kw):
    """An ImageSteerConfig for the tiny FLUX with pooled-vector conditioning (kw: feature, strength...)."""
    from saekit.steer.image.run import ImageSteerConfig

    return ImageSteerConfig(
        sae=str(flux_dir / sae), model=str(flux_dir / "flux"), prompt="a cat", conditioning="pooled",
        height=SIDE, width=SIDE, dtype="float32", device="cpu", quiet=True, out=out, **kw,
    )  # fmt: skip


def test_pooled_edit_refuses_an_sae_of_another_width(flux_dir, tmp_path):
    from saekit.steer.image.run import steer_image

    cfg = _pooled_cfg(
        flux_dir, tmp_path / "w.png", sae="wide", feature=(1,), strength="3", num_inference_steps=1
    )
    with pytest.raises(ShapeError, match=r"size 32 but the SAE has d_in=40"):
        steer_image(cfg)
    assert not (tmp_path / "w.png").exists()
