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


def test_analyze_and_browse_a_pipeline_store(pipeline, tmp_path):
    """`saekit analyze real` + `saekit browse` on a FLUX store (it records its prompts' token ids, which
    once made analyze load the pipeline as a language model and fail): the top image of a feature is the
    prompt where the store's rows give it its largest activation, the regenerated image is the
    pipeline's own output for that prompt and seed, and the per-step plot covers every step."""
    import json

    import saekit
    from saekit.analysis.image_report import image_kind
    from saekit.analysis.store_rows import StoreRows
    from saekit.testbed.fluxbed.build import generate, load_pipeline

    _, path = pipeline
    store, sae_dir, out = tmp_path / "acts", tmp_path / "sae", tmp_path / "ana"
    argv = ["harvest", "diffusion", "--model", str(path), "--hook-point", "transformer_blocks.0@image"]
    for p in PROMPTS:
        argv += ["--prompt", p]
    argv += ["--num-inference-steps", "2", "--tokens-per-step", "0", "--height", "32", "--width", "32"]
    assert cli([*argv, "--dtype", "float32", "--device", "cpu", "--out", str(store), "--quiet"]) == 0
    assert image_kind(StoreRows(store)) == "diffusion"
    assert cli(["train", "--acts", str(store), "--out", str(sae_dir), "--k", "4", "--expansion", "2",
                "--batch-size", "64", "--quiet", "--init-sample", "128", "--device", "cpu"]) == 0  # fmt: skip
    assert cli(["analyze", "real", "--sae", str(sae_dir), "--store", str(store), "--features", "top:2",
                "--out", str(out), "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    doc = json.loads((out / "analysis.json").read_text())
    sae = saekit.load(str(sae_dir), device="cpu")
    opened = ActivationStore.open(store)
    rows = opened.read_rows(np.arange(len(opened)))
    with torch.no_grad():
        lat = sae.encode(rows["acts"])
    pipe = load_pipeline(path)
    for key, feat in doc["features"].items():
        per_doc = [float(lat[rows["doc_id"] == d, int(key)].max()) for d in range(len(PROMPTS))]
        top = feat["top_images"][0]
        assert top["doc_id"] == int(np.argmax(per_doc)), key
        img = generate(pipe, [PROMPTS[top["doc_id"]]], top["seed"], 2, 1)[0]
        want = (img.permute(1, 2, 0).numpy() * 255).round()
        got = np.asarray(Image.open(out / top["image"]).convert("RGB")).astype(float)
        assert np.abs(want - got).max() == 0
        assert feat["timesteps"]["steps"] == [0, 1]
        for name in (feat["image_grid"], feat["timestep_plot"], *feat["heatmaps"]):
            assert (out / name).stat().st_size > 0
    assert cli(["browse", str(out), "--quiet"]) == 0
    assert (out / "browser" / "index.html").is_file()
