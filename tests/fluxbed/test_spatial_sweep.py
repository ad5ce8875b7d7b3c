"""`saekit sweep --methods spatial spatial_clamp` end to end on an untrained pipeline folder: the spatial
maps are measured per step and token, DiffMean gets its spatial twin in the grid, a spatial edit sees the
denoising step of every call (also when the prompts run in several batches), and strength 0 is no edit."""

from __future__ import annotations

import json

import pytest
import torch

from saekit.cli import main as cli
from saekit.testbed.fluxbed import components as C
from saekit.testbed.fluxbed.build import save_pipeline
from saekit.testbed.fluxbed.config import ci_config

from .pipeline_sae import CAPS, pipeline_and_sae


def test_spatial_sweep_measures_maps_reads_steps_and_strength_zero_changes_nothing(tmp_path):
    from saekit.sweep.image_factors import FactorSweepConfig, StepEdit, _Runner

    path, sae = pipeline_and_sae(tmp_path)
    r = _Runner(FactorSweepConfig(model=str(path), sae=str(sae), methods=("spatial",), num_inference_steps=2,
                                  batch=2))  # fmt: skip
    x, f, mx, mf = r.capture(CAPS, spatial=True)
    n_tokens = mx.shape[2]
    assert mx.shape == (3, 2, n_tokens, x.shape[1]) and mf.shape == (3, 2, n_tokens, f.shape[1])
    assert torch.allclose(mx.mean((1, 2)), x, atol=1e-5)  # the maps average to the per-prompt means
    assert not torch.allclose(mx[:, 0], mx[:, 1])  # one map per step, not one copied
    # 3 prompts in batches of 2: two pipeline calls, and the edit sees steps 0, 1 in each
    seen: list[tuple[int, int]] = []

    def record(x, step):
        seen.append((step, x.shape[0]))
        return x

    plain = r.generate(CAPS)
    assert torch.equal(r.generate(CAPS, StepEdit(record)), plain)
    assert seen == [(0, 2), (1, 2), (0, 1), (1, 1)]
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", str(path), "--sae", str(sae), "--factor", "position", "--targets", "top left",
            "--strengths", "0", "--methods", "spatial", "spatial_clamp", "--n-features", "2",
            "--n-select", "2", "--n-train", "2", "--n-test", "3", "--num-inference-steps", "2",
            "--batch", "4", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    res = json.loads((out / "results.json").read_text())
    t, pt = res["test"], res["per_target"][0]
    assert sorted(pt["train_grid"]) == ["diffmean:additive:0:all", "diffmean:spatial:0:all",
                                        "sae:spatial:0:all", "sae:spatial_clamp:0:all"]  # fmt: skip
    assert len(pt["spatial_features"]) == 2
    # adding strength 0 x the map is no edit; spatial_clamp at 0 sets the features to 0 (an edit), so
    # only the arms that chose an additive push are compared with the unsteered rate
    assert t["diffmean"]["faithful_success"] == t["unsteered"]["faithful_success"]
    # ... and every other factor reads as on the unsteered image (the per-factor breakdown)
    assert t["diffmean"]["kept"] == {"colour": 1.0, "thickness": 1.0, "size": 1.0}
    if pt["chosen"]["sae"]["method"] == "spatial":
        assert t["sae"]["faithful_success"] == t["unsteered"]["faithful_success"]


def test_text_site_rows_are_the_pipelines_prompt_embeds_and_the_sweep_steers_them(tmp_path):
    """`--conditioning text`: the harvested T5 rows are the pipeline's own `prompt_embeds`; the runner's
    unedited embeddings give the pipeline's own images; a spatial edit there sees every text token once
    (step None); strength 0 leaves DiffMean (uniform or spatial) at the unsteered rate."""
    import numpy as np

    from saekit.data.harvest.flux_text import harvest_t5_rows
    from saekit.data.store import ActivationStore
    from saekit.errors import SAEConfigError
    from saekit.sweep.image_factors import FactorSweepConfig, StepEdit, _Runner
    from saekit.testbed.fluxbed.build import generate, load_pipeline

    cfg = ci_config(judge_train_renders=300, judge_test_renders=60)
    torch.manual_seed(0)
    path = save_pipeline(C.pipeline_parts(cfg), tmp_path)
    (tmp_path / "build_config.json").write_text(json.dumps(cfg.to_dict()))
    store, sae = tmp_path / "acts", tmp_path / "sae"
    harvest_t5_rows(path, CAPS * 10, store, tokens_per_caption=6, batch_size=4)
    pipe = load_pipeline(path)
    with torch.no_grad():
        pe = pipe.encode_prompt(prompt=CAPS, prompt_2=None)[0]
    rows = ActivationStore.open(store).read_rows(np.arange(12))
    assert torch.allclose(rows["acts"], pe[:2, :6].reshape(12, -1), atol=1e-6)
    assert rows["position"].tolist() == list(range(6)) * 2 and rows["doc_id"].tolist() == [0] * 6 + [1] * 6
    with pytest.raises(SAEConfigError, match="no captions"):
        harvest_t5_rows(path, [], tmp_path / "empty")
    argv = ["train", "--acts", str(store), "--out", str(sae), "--k", "2", "--expansion", "2",
            "--batch-size", "16", "--total-tokens", "640", "--quiet", "--init-sample", "32",
            "--device", "cpu"]  # fmt: skip
    assert cli(argv) == 0
    r = _Runner(FactorSweepConfig(model=str(path), sae=str(sae), conditioning="text", methods=("spatial",),
                                  num_inference_steps=2, batch=2))  # fmt: skip
    plain = generate(pipe, CAPS, 0, 2, 2)
    assert torch.equal(r.generate(CAPS), plain)
    seen = []

    def record(x, step):
        seen.append((step, tuple(x.shape)))
        return x

    assert torch.equal(r.generate(CAPS, StepEdit(record)), plain)
    assert seen == [(None, tuple(pe.shape))]
    x, f, mx, mf = r.capture(CAPS, spatial=True)
    assert torch.allclose(mx, pe) and torch.allclose(x, pe.mean(1)) and mf.shape[:2] == pe.shape[:2]
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", str(path), "--sae", str(sae), "--conditioning", "text",
            "--factor", "position", "--targets", "top left", "--strengths", "0",
            "--methods", "additive", "spatial", "--n-select", "2", "--n-train", "2", "--n-test", "3",
            "--num-inference-steps", "2", "--batch", "4", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    res = json.loads((out / "results.json").read_text())
    t = res["test"]
    for arm in ("sae", "diffmean"):  # adding 0 (uniformly or per token) is no edit at all
        assert t[arm]["faithful_success"] == t["unsteered"]["faithful_success"], arm
    grid = sorted(res["per_target"][0]["train_grid"])
    assert grid == ["diffmean:additive:0:all", "diffmean:spatial:0:all", "sae:additive:0:all",
                    "sae:spatial:0:all"]  # fmt: skip
    assert "T5 prompt token embeddings" in (out / "table.md").read_text()
