"""Kandinsky 2.2 steered with a gytdau/clip-sae-128-format `.pth` (read by `saekit.load`), against the
gytdau math written out here: `f = relu(W x + enc_bias)`, `decode(f) = D f + dec_bias`, so setting
f_j := s with the error kept moves the embedding by `(s − f_j) D[:, j]`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .conftest import EMBED

pytest.importorskip("saekit.formats.gytdau")


def test_kandinsky_with_a_gytdau_pth(kandinsky_folders, tmp_path):
    from saekit.cli import main as cli
    from saekit.models.kandinsky import load_kandinsky

    g = torch.Generator().manual_seed(7)
    d_sae = 128
    state = {
        "encoder.weight": torch.randn(d_sae, EMBED, generator=g) * 0.3,
        "enc_bias": torch.randn(d_sae, generator=g) * 0.1,
        "decoder.weight": torch.randn(EMBED, d_sae, generator=g) * 0.3,
        "dec_bias": torch.randn(EMBED, generator=g) * 0.1,
    }
    torch.save(state, tmp_path / "sparse_autoencoder_128.pth")
    k = kandinsky_folders
    pipes = load_kandinsky(str(k / "decoder"), str(k / "prior"), dtype="float32", device="cpu")
    for p in pipes:
        p.set_progress_bar_config(disable=True)
    out = pipes.prior(
        "a red cat", negative_prompt="", num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    e = out.image_embeds
    j = int(torch.relu(e @ state["encoder.weight"].T + state["enc_bias"])[0].argmin())
    f_j = torch.relu(e @ state["encoder.weight"].T + state["enc_bias"])[0, j]
    moved = e + (40.0 - f_j) * state["decoder.weight"][:, j]

    def decode(emb):
        img = pipes.decoder(
            image_embeds=emb,
            negative_image_embeds=out.negative_image_embeds,
            height=64,
            width=64,
            num_inference_steps=2,
            guidance_scale=4.0,
            generator=torch.Generator().manual_seed(0),
            output_type="pil",
        ).images[0]
        return np.asarray(img.convert("RGB")).astype(int)

    args = ["steer", "--model", str(k / "decoder"), "--prior", str(k / "prior")]
    args += ["--sae", str(tmp_path / "sparse_autoencoder_128.pth"), "--feature", str(j), "--strength", "40"]
    args += ["--prompt", "a red cat", "--num-inference-steps", "2", "--prior-steps", "2", "--height", "64"]
    args += [
        "--width",
        "64",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(tmp_path / "g.png"),
    ]
    assert cli(args) == 0
    from PIL import Image

    both = np.asarray(Image.open(tmp_path / "g.png").convert("RGB")).astype(int)
    un, st = both[:, :64], both[:, 64:]
    assert np.array_equal(un, decode(e))
    assert (un != st).any() and np.abs(st - decode(moved)).max() <= 1
