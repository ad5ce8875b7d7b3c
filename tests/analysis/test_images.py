"""Image features of `analyze real`: CLIP grids + heatmaps, diffusion regeneration + timestep series.

Stores are written directly with the store writer in the PREAMBLE layout (documents.json, doc_id,
position, step, timestep, patch_grid); activations carry a planted feature at known places, so the
expected top images, patches and steps are known independently of the code under test.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from saekit.analysis.image_report import ImageConfig, add_images, image_kind
from saekit.analysis.real import RealConfig, analyze_store
from saekit.analysis.store_rows import StoreRows
from saekit.data.store_writer import StoreWriter
from saekit.sae import SAEConfig, build
from saekit.viz.image_grid import patch_rect

D = 8


def _planted_sae():
    """ReLU SAE whose feature 0 reads channel 0 exactly (feature 1 reads channel 1)."""
    sae = build(SAEConfig(d_in=D, d_sae=4, arch="relu"), seed=0).eval()
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[0, 0] = 1.0
        sae.W_enc[1, 1] = 1.0
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_patch_rect_row_major():
    assert patch_rect((64, 64), (4, 4), 5) == (16.0, 16.0, 16.0, 16.0)
    assert patch_rect((30, 60), (3, 6), 7) == (10.0, 10.0, 10.0, 10.0)


@pytest.fixture
def clip_store(tmp_path):
    names = ["astronaut", "coffee", "chelsea"]
    hot = {0: 10, 1: 5, 2: 12}  # image -> patch where feature 0 fires, with value 4 + image
    g = torch.Generator().manual_seed(0)
    folder = tmp_path / "clip"
    fields = {"model": "tiny-clip", "hook_point": "vision:-2:all", "d": D, "patch_grid": [4, 4]}
    with StoreWriter(folder, fields, resume=False, overwrite=True) as w:
        for i in range(3):
            acts = torch.randn(17, D, generator=g).abs() * 0.1
            acts[:, 0] = 0.0
            acts[1 + hot[i], 0] = 4.0 + i
            acts[1:, 0] += torch.linspace(0, 0.5, 16)  # a gradient over the other patches
            acts[1 + hot[i], 0] += 0.0
            w.add(
                acts,
                {
                    "doc_id": torch.full((17,), i, dtype=torch.int32),
                    "position": torch.arange(17, dtype=torch.int32),
                },
            )
    (folder / "documents.json").write_text(json.dumps([{"image": f"skimage:{n}"} for n in names]))
    return folder, hot


def test_clip_grid_heatmaps_and_fields(clip_store, tmp_path):
    folder, hot = clip_store
    sae, out = _planted_sae(), tmp_path / "an"
    src = StoreRows(folder)
    assert image_kind(src) == "clip"
    doc = analyze_store(sae, folder, [0], RealConfig(n_top=6))
    add_images(doc, src, out, ImageConfig(n_images=3, n_heatmaps=2), kind="clip", sae=sae)
    f = doc["features"]["0"]
    # best distinct images, best first: image 2 (6.x), then 1, then 0, each at its planted patch
    assert [t["doc_id"] for t in f["top_images"]] == [2, 1, 0]
    assert [t["position"] for t in f["top_images"]] == [1 + hot[2], 1 + hot[1], 1 + hot[0]]
    assert f["top_images"][0]["source"] == "skimage:chelsea"
    for t in f["top_images"]:
        with Image.open(out / t["image"]) as im:
            w, h = im.size
            assert w == h  # the CLIP view: the centre square
    import skimage.data

    cat = skimage.data.chelsea()
    s = min(cat.shape[:2])
    top = (cat.shape[0] - s) // 2
    left = (cat.shape[1] - s) // 2
    with Image.open(out / f["top_images"][0]["image"]) as im:
        np.testing.assert_array_equal(np.asarray(im), cat[top : top + s, left : left + s])
    assert (out / f["image_grid"]).is_file() and len(f["heatmaps"]) == 2
    for p in f["heatmaps"]:
        assert (out / p).stat().st_size > 5000


def test_clip_heatmap_peaks_at_planted_patch(clip_store):
    from saekit.analysis.image_report import _DocIndex, _heatmap

    folder, hot = clip_store
    src = StoreRows(folder)
    idx = _DocIndex(src)
    for i in range(3):
        H = _heatmap(_planted_sae(), src, idx, "clip", 0, {"doc_id": i, "position": 1}, (4, 4))
        assert H.shape == (4, 4) and int(np.argmax(H)) == hot[i]
        assert abs(H.max() - (4.0 + i + 0.5 * hot[i] / 15)) < 1e-5


@pytest.fixture(scope="module")
def tiny_pipe():
    from saekit.models.flux import tiny_flux_pipeline

    return tiny_flux_pipeline(seed=0, num_layers=1, num_single_layers=1)


def _embeds(meta):
    g = torch.Generator().manual_seed(1000 + int(meta["seed"]))
    return {
        "prompt_embeds": torch.randn(1, 4, 32, generator=g),
        "pooled_prompt_embeds": torch.randn(1, 32, generator=g),
    }


def test_diffusion_regenerates_and_tracks_steps(tmp_path, tiny_pipe):
    from saekit.analysis.image_render import diffusers_renderer

    side, steps, n_tok = 16, 3, 64  # tiny VAE: scale factor 1, 2x2 packing -> 8x8 tokens
    folder = tmp_path / "flux"
    fields = {"model": "tiny-flux", "hook_point": "transformer_blocks.0@image", "d": D, "height": side,
              "width": side, "num_inference_steps": steps, "guidance_scale": 3.5}  # fmt: skip
    g = torch.Generator().manual_seed(0)
    with StoreWriter(folder, fields, resume=False, overwrite=True) as w:
        for doc in range(2):
            for s in range(steps):
                acts = torch.randn(n_tok, D, generator=g).abs() * 0.1
                acts[:, 0] = 0.0
                if s == 2:  # feature 0 fires only at the last step, most on token 9 of image 1
                    acts[9 if doc == 1 else 3, 0] = 3.0 + doc
                meta = {"doc_id": torch.full((n_tok,), doc, dtype=torch.int32),
                        "position": torch.arange(n_tok, dtype=torch.int32),
                        "step": torch.full((n_tok,), s, dtype=torch.int32),
                        "timestep": torch.full((n_tok,), 1.0 - s / steps)}  # fmt: skip
                w.add(acts, meta)
    docs = [{"prompt": "a red square", "seed": 5}, {"prompt": "a blue circle", "seed": 6}]
    (folder / "documents.json").write_text(json.dumps(docs))
    sae, out, src = _planted_sae(), tmp_path / "an", StoreRows(folder)
    assert image_kind(src) == "diffusion"
    doc = analyze_store(sae, folder, [0, 1], RealConfig(n_top=4))
    render = diffusers_renderer(tiny_pipe, src.manifest, prompt_kwargs=_embeds)
    add_images(
        doc, src, out, ImageConfig(n_images=2, n_heatmaps=1), kind="diffusion", sae=sae, renderer=render
    )
    f = doc["features"]["0"]
    ts = f["timesteps"]
    assert ts["steps"] == [0, 1, 2] and ts["frequency"][:2] == [0.0, 0.0]
    assert abs(ts["frequency"][2] - 1 / n_tok) < 1e-12 and abs(ts["max"][2] - 4.0) < 1e-6
    assert ts["timesteps"] == pytest.approx([1.0, 2 / 3, 1 / 3])
    top = f["top_images"][0]
    assert (top["doc_id"], top["position"], top["step"], top["seed"]) == (1, 9, 2, 6)
    assert (out / f["timestep_plot"]).is_file() and (out / f["image_grid"]).is_file()
    # the stored picture is the pipeline's own output for that document's seed
    ref = tiny_pipe(**_embeds(docs[1]), height=side, width=side, num_inference_steps=steps,
                    guidance_scale=3.5,
                    generator=torch.Generator().manual_seed(6), output_type="np").images[0]  # fmt: skip
    with Image.open(out / top["image"]) as im:
        got = np.asarray(im).astype(float)
    assert np.abs(got - np.clip(ref * 255, 0, 255).round()).max() <= 1
    assert render(1, docs[1]).grid == (8, 8)
