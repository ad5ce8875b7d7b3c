"""`saekit steer --model <FLUX> --concept WORDS`: the features come from the concept, checked against
planted answers (pure functions) and against an independent computation on a fluxbed pipeline folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saekit.cli import main as cli
from saekit.errors import SteeringError
from saekit.sae import SAEConfig, build
from saekit.steer.image import concept as C


def _sae(d: int = 16, f: int = 32):
    return build(SAEConfig(d_in=d, d_sae=f, arch="relu"), seed=0).eval()


def test_zero_shot_finds_the_planted_decoder_direction():
    sae = _sae()
    u = torch.randn(16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        sae.W_dec[11] = 2.5 * u  # any norm: the cosine is what counts
        sae.W_dec[4] = -u  # anti-aligned: must come last, not first
    feats, cos = C.zero_shot_features(sae, u, 2)
    assert feats[0] == 11 and abs(cos[0] - 1.0) < 1e-5 and cos[1] < 1.0
    assert 4 not in feats
    with pytest.raises(SteeringError, match="d_in=16"):
        C.zero_shot_features(sae, torch.ones(8))
    with pytest.raises(SteeringError, match="1..32"):
        C.zero_shot_features(sae, u, 0)


def test_concept_direction_is_the_difference_and_refuses_an_indistinct_concept():
    a, b = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    assert torch.allclose(C.concept_direction(a, b), a.mean(1)[0] - b.mean(1)[0])
    pooled = torch.randn(1, 8)
    with pytest.raises(SteeringError, match="does not tell this concept apart"):
        C.concept_direction(pooled, pooled.clone())


def test_contrast_finds_the_latent_that_rises():
    off = torch.rand(6, 20, generator=torch.Generator().manual_seed(0))
    on = off.clone()
    on[:, 13] += 2.0
    on[:, 2] += 0.5
    feats, rise = C.contrast_features(on, off, 2)
    assert feats == [13, 2] and abs(rise[0] - 2.0) < 1e-5 and abs(rise[1] - 0.5) < 1e-5
    assert C.with_concept("a small 3 at the top left.", "red") == "a small 3 at the top left, red"


def _pipeline(tmp_path):
    from saekit.testbed.fluxbed import components as P
    from saekit.testbed.fluxbed.build import save_pipeline
    from saekit.testbed.fluxbed.config import ci_config

    cfg = ci_config(judge_train_renders=300, judge_test_renders=60)
    torch.manual_seed(0)
    return save_pipeline(P.pipeline_parts(cfg), tmp_path)


def test_steer_concept_on_the_pooled_vector_picks_the_zero_shot_feature(tmp_path):
    """The command's choice equals the decoder cosine computed here from the pipeline's own encode_prompt;
    the steered image differs from the unsteered one."""
    from saekit.testbed.fluxbed.build import load_pipeline

    path = _pipeline(tmp_path)
    caps = [
        "a small red 3 at the top left, thin strokes",
        "a large blue 7 at the bottom right, thick strokes",
    ]
    (tmp_path / "caps.jsonl").write_text("".join(json.dumps({"caption": c}) + "\n" for c in caps * 20))
    store, sae_dir = tmp_path / "acts", tmp_path / "sae"
    assert cli(["harvest", "clip", "--model", str(path / "text_encoder"),
                "--captions", str(tmp_path / "caps.jsonl"),
                "--site", "text:pooled", "--tokens", "40", "--dtype", "float32", "--device", "cpu",
                "--out", str(store), "--quiet"]) == 0  # fmt: skip
    assert cli(["train", "--acts", str(store), "--out", str(sae_dir), "--k", "2", "--expansion", "2",
                "--batch-size", "16", "--total-tokens", "320", "--init-sample", "32", "--device", "cpu",
                "--quiet"]) == 0  # fmt: skip
    import saekit

    sae = saekit.load(str(sae_dir), device="cpu")
    pipe = load_pipeline(path)
    with torch.no_grad():
        d = (
            pipe.encode_prompt(prompt="red", prompt_2=None)[1]
            - pipe.encode_prompt(prompt="", prompt_2=None)[1]
        )
        dirs = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
        expect = int(torch.argmax(dirs @ (d[0] / d[0].norm())))
    out = tmp_path / "steer.png"
    from saekit.steer.image import ImageSteerConfig, steer_image

    res = steer_image(ImageSteerConfig(sae=str(sae_dir), model=str(path), concept="red",
                                       conditioning="pooled",
                                       method="clamp", strength="3", prompt=caps[1], num_inference_steps=2,
                                       height=32, width=32, dtype="float32", device="cpu", out=out,
                                       quiet=True))  # fmt: skip
    assert f"concept 'red' -> f{expect} (decoder cosine" in res.description
    assert "zero-shot on pooled_prompt_embeds" in res.description
    a, b = np.asarray(res.unsteered, dtype=float), np.asarray(res.steered, dtype=float)
    assert np.abs(a - b).max() > 0


def test_concept_refusals(tmp_path):
    from saekit.steer.image import ImageSteerConfig, steer_image

    sae = _sae()
    sae_dir = tmp_path / "sae"
    sae.save(sae_dir)
    with pytest.raises(SteeringError, match="not both"):
        steer_image(ImageSteerConfig(sae=str(sae_dir), model="x", feature=(1,), concept="red", prompt="p"))
    with pytest.raises(SteeringError, match="--concept WORDS"):
        steer_image(ImageSteerConfig(sae=str(sae_dir), model="x", prompt="p"))


def test_judged_features_rank_latents_by_what_their_top_images_show():
    """Feature 5 is most active on the images the judge reads as the concept, feature 2 on others, 9 is
    silent everywhere (lift 0, never ahead of a real one); the lift is the top images' mean score minus
    the mean score of all images."""
    g = torch.Generator().manual_seed(0)
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    lat = torch.rand(8, 12, generator=g) * 0.1
    lat[:, 5] = scores * 3.0 + 0.05
    lat[:, 2] = (1 - scores) * 2.0
    lat[:, 9] = 0.0
    feats, lift = C.judged_features(lat, scores, n=2, top_k=2)
    assert feats[0] == 5 and abs(lift[0] - (1.0 - 3 / 8)) < 1e-6
    assert 2 not in feats  # its top images show no concept: lift -3/8
    feats_all, lifts_all = C.judged_features(lat, scores, n=12, top_k=2)
    assert lifts_all[feats_all.index(9)] == 0.0 and lifts_all[feats_all.index(2)] < 0
    # a tie on lift (both latents' top 2 images show the concept) goes to the one that separates more
    tied = torch.zeros(8, 3)
    tied[:, 0] = scores * 1.0 + 0.5  # high on every concept image, well apart from the rest
    tied[:, 1] = torch.tensor([0.9, 0.8, 0.7, 0.7, 0.7, 0.7, 0.1, 0.7])  # top 2 are concept images too
    f2, l2 = C.judged_features(tied, scores, n=2, top_k=2)
    assert f2 == [0, 1] and l2[0] == l2[1]
    with pytest.raises(SteeringError, match="scores"):
        C.judged_features(lat, scores[:4])
    with pytest.raises(SteeringError, match="top_k"):
        C.judged_features(lat, scores, top_k=9)
