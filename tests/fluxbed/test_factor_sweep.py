"""`saekit sweep --model <fluxbed pipeline>` end to end on an untrained pipeline folder: the plumbing of
the image factor sweep (selection in the loop, the arms, judging, files), with one known answer: at
strength 0 every arm leaves the image as it was, so its faithful success equals the unsteered rate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saekit.cli import main as cli
from saekit.testbed.fluxbed import components as C
from saekit.testbed.fluxbed.build import save_pipeline
from saekit.testbed.fluxbed.config import ci_config

from .pipeline_sae import pipeline_and_sae


def test_factor_sweep_runs_and_strength_zero_changes_nothing(tmp_path):
    path, sae = pipeline_and_sae(tmp_path)
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", str(path), "--sae", str(sae), "--factor", "size", "--targets", "large",
            "--strengths", "0", "--methods", "additive", "--n-select", "2", "--n-train", "2",
            "--n-test", "3", "--num-inference-steps", "2", "--batch", "4", "--out", str(out),
            "--windows", "all", "late", "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    res = json.loads((out / "results.json").read_text())
    t = res["test"]
    assert t["sae"]["n"] == 3 and (out / "table.md").is_file() and (out / "contact.png").stat().st_size > 0
    # strength 0: the steered images are the unsteered ones, so "faithful success" is the rate at which
    # the unsteered image already reads the target
    for arm in ("sae", "diffmean"):
        assert t[arm]["faithful_success"] == t["unsteered"]["faithful_success"], arm
    assert t["sae_minus_diffmean"]["difference"] == 0.0
    assert res["per_target"][0]["target"] == "large" and len(res["per_target"][0]["features"]) == 1
    grid = res["per_target"][0]["train_grid"]  # every window is a grid axis, for both arms
    assert sorted(grid) == ["diffmean:additive:0:all", "diffmean:additive:0:late", "sae:additive:0:all",
                            "sae:additive:0:late"]  # fmt: skip


def test_pooled_site_harvest_reads_what_flux_receives_and_the_sweep_steers_it(tmp_path):
    """`--conditioning pooled`: the pooled CLIP vector harvested from the pipeline's text_encoder folder is
    the `pooled_prompt_embeds` the pipeline computes; images generated from the (unedited) embeddings are
    the pipeline's own images bit for bit; strength 0 leaves every arm at the unsteered rate."""
    from saekit.data.store import ActivationStore
    from saekit.sweep.image_factors import FactorSweepConfig, _Runner
    from saekit.testbed.fluxbed.build import generate, load_pipeline

    cfg = ci_config(judge_train_renders=300, judge_test_renders=60)
    torch.manual_seed(0)
    path = save_pipeline(C.pipeline_parts(cfg), tmp_path)
    (tmp_path / "build_config.json").write_text(json.dumps(cfg.to_dict()))
    caps = ["a small red 3 at the top left, thin strokes",
            "a large blue 7 at the bottom right, thick strokes",
            "a small green 1 at the top right, thick strokes"]  # fmt: skip
    (tmp_path / "caps.jsonl").write_text("".join(json.dumps({"caption": c}) + "\n" for c in caps * 20))
    store, sae = tmp_path / "acts", tmp_path / "sae"
    argv = ["harvest", "clip", "--model", str(path / "text_encoder"),
            "--captions", str(tmp_path / "caps.jsonl"), "--site", "text:pooled", "--tokens", "60",
            "--dtype", "float32", "--store-dtype", "float32",
            "--device", "cpu", "--out", str(store), "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    pipe = load_pipeline(path)
    with torch.no_grad():
        pooled = pipe.encode_prompt(prompt=caps, prompt_2=None)[1]
    rows = ActivationStore.open(store).read_rows(np.arange(3))["acts"]
    assert torch.allclose(rows, pooled, atol=1e-5 * float(pooled.abs().max()) + 1e-6)
    argv = ["train", "--acts", str(store), "--out", str(sae), "--k", "2", "--expansion", "2",
            "--batch-size", "16", "--total-tokens", "320", "--quiet", "--init-sample", "32",
            "--device", "cpu"]  # fmt: skip
    assert cli(argv) == 0
    runner = _Runner(FactorSweepConfig(model=str(path), sae=str(sae), conditioning="pooled",
                                       num_inference_steps=2, batch=2))  # fmt: skip
    assert torch.equal(runner.generate(caps), generate(pipe, caps, 0, 2, 2))
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", str(path), "--sae", str(sae), "--conditioning", "pooled",
            "--factor", "colour", "--targets", "red", "--strengths", "0", "--methods", "additive",
            "--n-select", "2", "--n-train", "2", "--n-test", "3", "--num-inference-steps", "2",
            "--batch", "4", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    res = json.loads((out / "results.json").read_text())
    t = res["test"]
    for arm in ("sae", "diffmean"):  # adding 0 to the pooled vector is no edit at all
        assert t[arm]["n"] == 3 and t[arm]["faithful_success"] == t["unsteered"]["faithful_success"], arm
    assert "pooled CLIP prompt vector" in (out / "table.md").read_text()
    # zero-shot selection: the feature is the decoder direction closest to pooled("red") - pooled("")
    import saekit

    sae_m = saekit.load(str(sae), device="cpu")
    with torch.no_grad():
        d = (
            pipe.encode_prompt(prompt="red", prompt_2=None)[1]
            - pipe.encode_prompt(prompt="", prompt_2=None)[1]
        )
        expect = int(torch.argmax(sae_m.decoder_directions() @ (d[0] / d[0].norm())))
    zs = tmp_path / "sweep_zs"
    assert cli([*argv[: argv.index("--out")], "--out", str(zs), "--select", "zero-shot", "--quiet"]) == 0
    assert json.loads((zs / "results.json").read_text())["per_target"][0]["features"] == [expect]
    # the CLIP judge beside the factor judges: at strength 0 the steered image is the unsteered one, so
    # SSIM and CLIP image similarity are exactly 1; the agreement covers every train configuration
    from saekit.testbed.fluxbed.clip import ClipTrainConfig, train_clip

    train_clip(cfg, tmp_path / "clip", ClipTrainConfig(n_pairs=128, steps=3, batch=32, width=32, layers=1),
               quiet=True)  # fmt: skip
    cj = tmp_path / "sweep_clip"
    base = argv[: argv.index("--strengths")]
    rest = argv[argv.index("--methods") :]
    rest = rest[: rest.index("--out")]
    assert cli([*base, "--strengths", "0", "1", *rest, "--out", str(cj),
                "--clip-judge", str(tmp_path / "clip"), "--quiet"]) == 0  # fmt: skip
    res = json.loads((cj / "results.json").read_text())
    grid = res["per_target"][0]["clip_grid"]
    assert sorted(g["config"] for g in grid) == ["diffmean:additive:0:all", "diffmean:additive:1:all",
                                                 "sae:additive:0:all", "sae:additive:1:all"]  # fmt: skip
    for g in grid:
        if g["config"].endswith(":0:all"):
            assert g["ssim"] == pytest.approx(1.0) and g["clip_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert all(a["n"] == 4 for a in res["test"]["judge_agreement"].values())
    assert "CLIP judge vs factor judges" in (cj / "table.md").read_text()
