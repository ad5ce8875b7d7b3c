"""The testbed store carries the image metadata, and its documents regenerate the harvested images."""

import json

import numpy as np
import pytest
import torch

from saekit.analysis.image_render import digits_renderer, digits_to_rgb
from saekit.analysis.testbed_store import harvest_testbed_store
from saekit.data.store import ActivationStore
from saekit.testbed.config import ci_config
from saekit.testbed.data import unpatchify
from saekit.testbed.flow import sample
from saekit.testbed.model import FlowTransformer


def test_testbed_store_layout_and_regeneration(tmp_path):
    cfg = ci_config(sample_steps=3)
    torch.manual_seed(0)
    model = FlowTransformer(cfg).eval()  # random weights: the layout and the seeds are what matter
    block = cfg.block_name("late")
    folder = harvest_testbed_store(model, cfg, tmp_path / "m.safetensors", block, "image", tmp_path / "s",
                                   n_images=3, seed=40, batch=2)  # fmt: skip
    st = ActivationStore.open(folder)
    n_tok = cfg.n_image_tokens
    assert len(st) == 3 * 3 * n_tok and st.manifest["patch_grid"] == [4, 4]
    meta = st.read_rows(np.arange(len(st)), names=["doc_id", "position", "step", "timestep"])
    for d in range(3):  # every image has every token at every step, once
        m = meta["doc_id"] == d
        pairs = set(zip(meta["step"][m].tolist(), meta["position"][m].tolist()))
        assert pairs == {(s, p) for s in range(3) for p in range(n_tok)}
    assert sorted(set(meta["timestep"].tolist()), reverse=True) == pytest.approx([1.0, 2 / 3, 1 / 3])
    docs = json.loads((folder / "documents.json").read_text())
    assert docs[2] == {"prompt": "digit 2", "seed": 42, "class": 2}
    # the renderer's image is the image the model generates from that seed and class
    render = digits_renderer(model, cfg, steps=3, guidance=cfg.guidance)
    g = torch.Generator().manual_seed(42)
    noise = torch.randn(1, n_tok, cfg.patch**2, generator=g)
    x, _ = sample(model, noise, torch.tensor([2]), steps=3, guidance=cfg.guidance)
    r = render(2, docs[2])
    assert r.grid == (4, 4)
    np.testing.assert_array_equal(r.pixels, digits_to_rgb(unpatchify(x, cfg.patch)[0]))
