"""End to end: `saekit analyze real|synthetic|compare` on a tiny LM, its store and a tiny SAE."""

import json

import pytest
import torch
from PIL import Image

import saekit
from saekit.commands.analyze import main
from saekit.sae import Provenance, SAEConfig, build


@pytest.fixture
def sae_folder(tmp_path, tiny_lm_folder):
    cfg = SAEConfig(
        d_in=32,
        d_sae=24,
        arch="topk",
        k=4,
        provenance=Provenance(model=str(tiny_lm_folder), hook_point="model.layers.0"),
    )
    sae = build(cfg, seed=0)
    return sae.save(tmp_path / "sae")


def _png_ok(path, min_w=600, min_h=400):
    assert path.is_file() and path.stat().st_size > 20_000
    with Image.open(path) as im:
        w, h = im.size
        assert w >= min_w and h >= min_h
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 50  # not a blank canvas


def test_compare_end_to_end(tmp_path, sae_folder, tiny_lm_store, monkeypatch):
    from saekit import models

    loads, real_load = [], models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    out = tmp_path / "report"
    argv = [
        "compare",
        "--sae",
        str(sae_folder),
        "--store",
        str(tiny_lm_store),
        "--features",
        "top:3",
        "--out",
        str(out),
        "--quiet",
        "--n-steps",
        "3",
        "--restarts",
        "1",
        "--seq-len",
        "4",
        "--n-candidates",
        "8",
        "--n-top",
        "5",
        "--batch-size",
        "50",
    ]
    assert main(argv) == 0
    assert len(loads) == 1  # real and synthetic share one float32 model
    doc = json.loads((out / "analysis.json").read_text())
    # reference: each feature's max over the store's rows, encoded here
    from saekit.data import ActivationStore

    with torch.no_grad():
        rows = next(ActivationStore.open(tiny_lm_store).iter_batches(10_000, shuffle=False))
        real_max = saekit.load(sae_folder).encode(rows.float()).amax(0)
    assert doc["schema_version"] == 1 and doc["format"] == "saekit.analysis"
    assert len(doc["features"]) == 3
    for k, feat in doc["features"].items():
        ex = feat["top_examples"]
        assert len(ex) == 5 and ex[0]["activation"] >= ex[-1]["activation"]
        # raw token strings (word-level tokenizer): the focus token's text matches its id's word
        assert ex[0]["context"]["tokens"][ex[0]["context"]["focus"]] == ex[0]["token"]
        assert len(feat["logit_effects"]["promoted"]) == 10
        assert feat["synthetic"]["sequences"][0]["perplexity"] > 1
        assert feat["comparison"]["real_max"] == pytest.approx(float(real_max[int(k)]), rel=1e-5)
        best = max(seq["activation"] for seq in feat["synthetic"]["sequences"])
        assert feat["comparison"]["ratio_to_real_max"] == pytest.approx(
            best / float(real_max[int(k)]), rel=1e-4
        )
        _png_ok(out / f"feature_{k}_real.png")
        _png_ok(out / f"feature_{k}_synthetic.png")
    for name in ("summary_real.png", "statistics_real.png", "real_vs_synthetic_comparison.png"):
        _png_ok(out / name)


def test_active_spec_and_bad_spec(tmp_path, sae_folder, tiny_lm_store):
    from saekit.errors import FeatureSpecError

    out = tmp_path / "r"
    assert (
        main(
            [
                "real",
                "--sae",
                str(sae_folder),
                "--store",
                str(tiny_lm_store),
                "--features",
                'active:2:"the cat sat"',
                "--out",
                str(out),
                "--quiet",
                "--no-plots",
            ]
        )
        == 0
    )
    doc = json.loads((out / "analysis.json").read_text())
    assert len(doc["features"]) == 2
    with pytest.raises(FeatureSpecError, match="out of range"):
        main(
            [
                "real",
                "--sae",
                str(sae_folder),
                "--store",
                str(tiny_lm_store),
                "--features",
                "20-30",
                "--out",
                str(out),
                "--quiet",
                "--no-plots",
            ]
        )
