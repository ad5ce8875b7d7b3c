"""Verbs given `--sae` as a single file (here gytdau's `.pth`): their outputs go to `output_folder`."""

from __future__ import annotations

import re

import torch


def _gytdau_file(path, d_in=32, d_sae=48):
    g = torch.Generator().manual_seed(0)
    torch.save(
        {
            "encoder.weight": torch.randn(d_sae, d_in, generator=g) * 0.3,
            "enc_bias": torch.zeros(d_sae),
            "decoder.weight": torch.randn(d_in, d_sae, generator=g) * 0.3,
            "dec_bias": torch.zeros(d_in),
        },
        path,
    )
    return path


def test_scale_then_steer_a_single_file_sae(tmp_path, tiny_lm):
    from saekit.steer.calibration import load_calibration
    from saekit.steer.run import SteerConfig, run
    from saekit.steer.scale import ScaleConfig, measure_scales

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the sea is wide and the ships sail on it. " * 40)
    sae = _gytdau_file(tmp_path / "sparse_autoencoder_48.pth")
    hp = "model.layers.1"
    cfg = ScaleConfig(sae=str(sae), hook_point=hp, corpus=str(corpus), tokens=300, context_len=32, quiet=True)
    cal, json_path = measure_scales(cfg, lm=tiny_lm)
    folder = tmp_path / "sparse_autoencoder_48"  # beside the file, named after it
    assert json_path == folder / "scales.json" and sae.is_file()
    j = int(cal.max_active.argmax())
    assert float(cal.max_active[j]) > 0
    text = run(
        SteerConfig(
            sae=str(sae),
            hook_point=hp,
            prompt="the sea",
            feature=(j,),
            strength="2max",
            max_new_tokens=3,
            chat=False,
        ),  # fmt: skip
        lm=tiny_lm,
    )
    # "2max" is twice the feature's max activation as saved in the output folder
    saved = load_calibration(folder, d_sae=48, required=True)
    got = float(re.search(rf"f{j}=([0-9.e+-]+)", text).group(1))
    assert got == float(f"{2 * float(saved.max_active[j]):.3g}")
