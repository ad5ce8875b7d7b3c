"""The CLIP judge (`saekit.sweep.clip_judge`) and the testbed CLIP it is validated with, against hand
computations and known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saekit.sweep.clip_judge import ClipJudge, rank_agreement, ssim


@pytest.fixture(scope="module")
def testbed_clip(tmp_path_factory):
    """A testbed CLIP trained for a few steps (the judge's plumbing; its quality is measured in the docs)."""
    from saekit.testbed.fluxbed.clip import ClipTrainConfig, train_clip
    from saekit.testbed.fluxbed.config import ci_config

    out = tmp_path_factory.mktemp("clip")
    cfg = ClipTrainConfig(n_pairs=512, steps=30, batch=64, width=32, layers=1)
    return out, train_clip(ci_config(), out, cfg, quiet=True)


def test_training_lowers_the_contrastive_loss_and_saves_a_clip_folder(testbed_clip):
    out, fig = testbed_clip
    assert fig["final_loss"] < 0.8 * fig["first_loss"]
    assert json.loads((out / "testbed_clip.json").read_text())["config"]["steps"] == 30
    from transformers import CLIPModel

    assert CLIPModel.from_pretrained(out).config.vision_config.image_size == 32


def test_judge_scores_match_a_hand_computation(testbed_clip):
    out, _ = testbed_clip
    judge = ClipJudge(str(out))
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(3, 3, 32, 32, generator=g)
    wanted = ["a small red 3 at the top left, thin strokes"] * 3
    asked = ["a small blue 3 at the top left, thin strokes"] * 3
    m = judge.model
    with torch.no_grad():
        mean = torch.tensor(judge.processor.image_mean)[:, None, None]
        std = torch.tensor(judge.processor.image_std)[:, None, None]
        ie = m.get_image_features(pixel_values=(imgs - mean) / std)
        ie = torch.nn.functional.normalize(ie if isinstance(ie, torch.Tensor) else ie.pooler_output, dim=-1)
        enc = judge.tokenizer([wanted[0], asked[0]], padding=True, return_tensors="pt")
        te = m.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        te = torch.nn.functional.normalize(te if isinstance(te, torch.Tensor) else te.pooler_output, dim=-1)
    expect = (ie @ te[0] - ie @ te[1]).numpy()
    assert np.allclose(judge.concept_margin(imgs, wanted, asked), expect, atol=1e-5)
    assert np.allclose(judge.similarity(imgs, imgs), 1.0, atol=1e-5)
    assert judge.similarity(imgs, 1 - imgs).max() < 1.0


def test_ssim_is_one_for_equal_images_and_lower_for_noise():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 32, 32, generator=g)
    assert np.allclose(ssim(a, a), 1.0)
    noisy = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    assert (ssim(a, noisy) < 0.9).all()


def test_rank_agreement_known_answers():
    x = [0.1, 0.5, 0.2, 0.9, 0.4]
    assert rank_agreement(x, [2 * v + 1 for v in x])["spearman"] == pytest.approx(1.0)
    assert rank_agreement(x, [-v for v in x])["spearman"] == pytest.approx(-1.0)
    assert np.isnan(rank_agreement(x, [1.0] * 5)["spearman"])  # a constant judge ranks nothing


def test_a_missing_clip_folder_is_a_clear_error(tmp_path):
    from saekit.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="local CLIP folder"):
        ClipJudge(str(tmp_path / "nope"))
