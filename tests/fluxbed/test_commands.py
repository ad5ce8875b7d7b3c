"""The normal commands on a fluxbed pipeline folder, exactly as on FLUX.1: `saekit harvest` on the fly
over the denoising loop (text prompts through the folder's own tokenizers and encoders), `saekit train`
on that store, `saekit steer` in the loop. The pipeline is untrained here (the commands' plumbing is
what is tested; the built testbed's quality is `test_build`'s job)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from saekit.cli import main as cli
from saekit.data.store import ActivationStore
from saekit.testbed.fluxbed import components as C
from saekit.testbed.fluxbed.build import save_pipeline
from saekit.testbed.fluxbed.config import ci_config

PROMPTS = ("a small red 3 at the top left, thin strokes", "a large blue 7 at the bottom right, thick strokes")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    cfg = ci_config()
    torch.manual_seed(0)
    return cfg, save_pipeline(C.pipeline_parts(cfg), tmp_path_factory.mktemp("fluxbed_cmds"))


def test_harvest_train_steer_on_the_pipeline_folder(pipeline, tmp_path):
    cfg, path = pipeline
    width = cfg.heads * cfg.head_dim
    store = tmp_path / "acts"
    argv = ["harvest", "diffusion", "--model", str(path), "--hook-point", "transformer_blocks.0@image"]
    for p in PROMPTS:
        argv += ["--prompt", p]
    argv += ["--num-inference-steps", "2", "--tokens-per-step", "0", "--height", "32", "--width", "32"]
    argv += ["--dtype", "float32", "--device", "cpu", "--out", str(store), "--quiet"]
    assert cli(argv) == 0
    opened = ActivationStore.open(store)
    m = opened.manifest
    assert m["complete"] and m["stream"] == "image" and m["d"] == width
    assert len(opened) == len(PROMPTS) * 2 * 64  # prompts x steps x (16/2)^2 image tokens

    sae = tmp_path / "sae"
    argv = ["train", "--acts", str(store), "--out", str(sae), "--k", "4", "--expansion", "2"]
    argv += ["--batch-size", "64", "--quiet", "--init-sample", "128", "--device", "cpu"]
    assert cli(argv) == 0

    base = [
        "steer",
        "--model",
        str(path),
        "--sae",
        str(sae),
        "--prompt",
        PROMPTS[0],
        "--num-inference-steps",
        "2",
        "--height",
        "32",
        "--width",
        "32",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--quiet",
    ]
    loop = [
        "--hook-point",
        "transformer_blocks.0",
        "--stream",
        "image",
        "--feature",
        "1",
        "--method",
        "additive",
    ]
    assert cli(base + loop + ["--strength", "50", "--out", str(tmp_path / "s.png")]) == 0
    both = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    un, st = both[:, : both.shape[1] // 2], both[:, both.shape[1] // 2 :]
    assert un.shape == (32, 32, 3) and (un != st).any()
    assert cli(base + loop + ["--strength", "0", "--out", str(tmp_path / "z.png")]) == 0
    z = np.asarray(Image.open(tmp_path / "z.png").convert("RGB"))
    assert np.array_equal(z[:, :32], z[:, 32:]) and np.array_equal(z[:, :32], un)
