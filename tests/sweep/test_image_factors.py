"""The factor sweep's pure pieces against hand-made answers (the run: docs/results/fluxbed_steering)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saekit.sweep.image_factors import bootstrap_mean, faithful, latent_shift, table_markdown

from .factor_results import factor_result


def test_latent_shift_finds_the_planted_latent_and_its_values():
    g = torch.Generator().manual_seed(0)
    off = torch.rand(40, 32, generator=g)
    on = off.clone()
    on[:, 7] += 3.0  # latent 7 rises by 3 from "not v" to "v"
    on[:, 2] += 1.0
    feats, shift, mean_on = latent_shift(on, off, 2)
    assert feats == [7, 2]
    assert torch.allclose(shift, torch.tensor([3.0, 1.0]), atol=1e-5)
    assert torch.allclose(mean_on, on.mean(0)[[7, 2]])


def test_faithful_needs_the_target_and_the_other_factors_unchanged():
    base = np.array([[1, 0, 0, 2, 1], [1, 0, 0, 2, 1], [1, 0, 0, 2, 1], [1, 3, 0, 2, 1]])
    pred = np.array([[1, 5, 0, 2, 1], [1, 5, 1, 2, 1], [1, 4, 0, 2, 1], [1, 5, 0, 2, 1]])
    # steering colour (index 1) to 5, keeping thickness, position, size (2, 3, 4)
    ok = faithful(pred, base, factor=1, target=5, keep=[2, 3, 4])
    assert ok.tolist() == [True, False, False, True]  # row 2 changed thickness; row 3 missed the target


def test_bootstrap_mean_covers_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.random(20) < 0.5, rng.random(2000) < 0.5
    lo, hi = bootstrap_mean(small.astype(float))
    assert lo <= small.mean() <= hi
    lo2, hi2 = bootstrap_mean(large.astype(float))
    assert (hi2 - lo2) < (hi - lo) / 3


def test_table_names_every_arm_and_the_paired_difference():
    result = factor_result(config={"hook_point": "transformer_blocks.1@image"})
    text = table_markdown(result)
    needles = ("SAE (best method, strength)", "DiffMean", "prompting", "unsteered", "+0.10 [-0.10, +0.30]",
               "| red | f3 | additive x2 (0.70)")  # fmt: skip
    for needle in needles:
        assert needle in text, needle


def test_step_windows_name_the_steps_and_refuse_bad_specs():
    from saekit.errors import SteeringError
    from saekit.sweep.image_factors import FactorSweepConfig, step_window

    assert step_window("all", 12) is None
    assert list(step_window("early", 12)) == list(range(6))
    assert list(step_window("late", 12)) == list(range(6, 12))
    assert list(step_window("3:5", 12)) == [3, 4]
    for bad in ("5:3", "0:13", "middle", "a:b", "4"):
        with pytest.raises(SteeringError, match="step window"):
            step_window(bad, 12)
    with pytest.raises(SteeringError, match="step window"):
        FactorSweepConfig(model="m", sae="s", windows=("all", "0:20"))
    with pytest.raises(SteeringError, match="needs an SAE on the pooled CLIP vector"):
        FactorSweepConfig(model="m", sae="s", select="zero-shot")
    with pytest.raises(SteeringError, match="in-loop edits only"):
        FactorSweepConfig(model="m", sae="s", conditioning="pooled", windows=("early",))


def test_table_names_the_pooled_site_and_a_chosen_window():
    result = factor_result(
        config={"hook_point": None, "conditioning": "pooled", "preserve": ["colour"]},
        test={"sae_minus_diffmean": {"difference": 0.0, "ci": (0.0, 0.0)}},
        chosen={"sae": {"method": "clamp", "strength": 4.0, "window": "late", "train": 0.7},
                "diffmean": {"method": "additive", "strength": 1.0, "window": "all", "train": 0.5}},
        features=[3, 9],
    )  # fmt: skip
    text = table_markdown(result)
    assert "pooled CLIP prompt vector" in text
    assert "| red | f3, f9 | clamp x4 steps late (0.70) | x1 (0.50) |" in text


def test_spatial_methods_are_validated_and_give_diffmean_its_spatial_twin():
    from saekit.errors import SteeringError
    from saekit.sweep.image_factors import FactorSweepConfig, factor_sweep_configs

    cfg = FactorSweepConfig(model="m", sae="s", methods=("additive", "spatial"), strengths=(1.0, 2.0))
    grid = factor_sweep_configs(cfg)
    assert [c for c in grid if c[0] == "diffmean"] == [
        ("diffmean", "additive", 1.0, "all"), ("diffmean", "additive", 2.0, "all"),
        ("diffmean", "spatial", 1.0, "all"), ("diffmean", "spatial", 2.0, "all")]  # fmt: skip
    plain = factor_sweep_configs(FactorSweepConfig(model="m", sae="s", methods=("clamp",), strengths=(1.0,)))
    assert [c[1] for c in plain if c[0] == "diffmean"] == ["additive"]  # no spatial method, no twin
    with pytest.raises(SteeringError, match="pooled vector has no tokens"):
        FactorSweepConfig(model="m", sae="s", conditioning="pooled", methods=("spatial",))
    with pytest.raises(SteeringError, match="spatial_clamp"):
        FactorSweepConfig(model="m", sae="s", methods=("spatal",))
    with pytest.raises(SteeringError, match="empty"):
        FactorSweepConfig(model="m", sae="s", methods=())


def test_table_shows_the_spatial_features_and_diffmeans_spatial_choice():
    row = {"faithful_success": 0.5, "ci": (0.3, 0.7), "n": 12, "success": 0.6}
    result = {
        "config": {"factor": "position", "model": "m", "hook_point": "transformer_blocks.1@image",
                   "n_test": 12, "preserve": ["colour"]},
        "test": {"sae": row, "diffmean": row, "prompting": row, "unsteered": row,
                 "sae_minus_diffmean": {"difference": 0.0, "ci": (0.0, 0.0)}},
        "per_target": [
            {"target": "top left", "features": [3], "spatial_features": [8, 5],
             "chosen": {"sae": {"method": "spatial", "strength": 2.0, "window": "all", "train": 0.4},
                        "diffmean": {"method": "spatial", "strength": 1.0, "window": "all", "train": 0.6}}},
            {"target": "top right", "features": [4], "spatial_features": [9, 1],
             "chosen": {"sae": {"method": "clamp", "strength": 1.0, "window": "all", "train": 0.1},
                        "diffmean": {"method": "additive", "strength": 4.0, "window": "all", "train": 0.0}}},
        ],
        "per_target_test": {t: {"sae": 0.5, "diffmean": 0.5, "prompting": 0.9}
                            for t in ("top left", "top right")},
    }  # fmt: skip
    result["test"]["sae"] = {**row, "kept": {"colour": 1.0, "size": 0.25}}
    text = table_markdown(result)
    assert "| top left | f8, f5 | spatial x2 (0.40) | spatial x1 (0.60) |" in text
    assert "- SAE: colour 1.00, size 0.25" in text and "- DiffMean:" not in text
    assert "| top right | f4 | clamp x1 (0.10) | x4 (0.00) |" in text


def test_text_conditioning_takes_spatial_methods_but_no_windows_or_zero_shot():
    from saekit.errors import SteeringError
    from saekit.sweep.image_factors import FactorSweepConfig, _site_words

    cfg = FactorSweepConfig(model="m", sae="s", conditioning="text", methods=("additive", "spatial"))
    assert "T5 prompt token embeddings" in _site_words({"conditioning": cfg.conditioning, "hook_point": None})
    with pytest.raises(SteeringError, match="conditioning text edits what every step reads"):
        FactorSweepConfig(model="m", sae="s", conditioning="text", windows=("early",))
    with pytest.raises(SteeringError, match="pooled CLIP vector"):
        FactorSweepConfig(model="m", sae="s", conditioning="text", select="zero-shot")
