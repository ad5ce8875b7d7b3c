"""`saekit sweep --model <FluxPipeline> --concept WORDS --prompts FILE --clip-judge CLIP`: the image sweep
that needs no factor judges (what a FLUX.1 user runs), end to end on an untrained testbed pipeline folder
and a briefly trained testbed CLIP. Known answers: at strength 0 every arm's images are the unsteered ones,
so each arm scores exactly what the unsteered images score, and those scores equal a CLIP judgement
computed here of the images the pipeline makes by itself (not through the sweep's runner)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saekit.cli import main as cli
from saekit.errors import SteeringError
from saekit.sweep.image_concept import ConceptImageSweepConfig, clip_outcomes, split_prompts

CAPTIONS = [
    f"a {size} {colour} {digit} at the {pos}, {thick} strokes"
    for size, colour, digit, pos, thick in [
        ("small", "blue", 3, "top left", "thin"), ("large", "green", 7, "bottom right", "thick"),
        ("small", "yellow", 1, "top right", "thin"), ("large", "white", 4, "bottom left", "thick"),
        ("small", "magenta", 9, "bottom right", "thin"), ("large", "blue", 0, "top left", "thin"),
        ("small", "green", 5, "bottom left", "thick"), ("large", "yellow", 2, "top right", "thick"),
    ]
]  # fmt: skip


def test_split_is_disjoint_seeded_and_refuses_too_few_prompts():
    ps = [f"p{i}" for i in range(10)] + ["p3"]  # a duplicate counts once
    a = split_prompts(ps, 2, 3, 4, seed=1)
    assert split_prompts(ps, 2, 3, 4, seed=1) == a and split_prompts(ps, 2, 3, 4, seed=2) != a
    flat = [p for part in a for p in part]
    assert [len(x) for x in a] == [2, 3, 4] and len(set(flat)) == 9 and set(flat) <= set(ps)
    with pytest.raises(SteeringError, match="10 distinct prompts, 11 needed"):
        split_prompts(ps, 4, 4, 3, seed=0)


def test_outcomes_need_the_concept_and_the_rest_of_the_image():
    out = clip_outcomes(np.array([0.2, 0.2, -0.1, 0.0]), np.array([0.9, 0.5, 0.95, 0.99]), keep=0.8)
    assert out["success"].tolist() == [True, True, False, False]
    assert out["kept"].tolist() == [True, False, True, True]
    assert out["faithful"].tolist() == [True, False, False, False]
    per_image = clip_outcomes(np.array([0.2, 0.2]), np.array([0.5, 0.5]), keep=np.array([0.4, 0.6]))
    assert per_image["faithful"].tolist() == [True, False]  # a bar per image (the prompting image's)


def test_config_refuses_what_cannot_run(tmp_path):
    base = dict(model="m", sae="s", concept="red", prompts="p.txt", clip_judge="c")
    with pytest.raises(SteeringError, match="true CFG"):
        ConceptImageSweepConfig(**base, branches=("uncond",))
    with pytest.raises(SteeringError, match=r"\{prompt\}"):
        ConceptImageSweepConfig(**base, concept_template="{concept} only")
    with pytest.raises(SteeringError, match="in-loop"):
        ConceptImageSweepConfig(**base, conditioning="pooled", windows=("late",))


@pytest.fixture(scope="module")
def flux_parts(tmp_path_factory):
    """An untrained testbed FluxPipeline folder, a briefly trained testbed CLIP, an SAE in the loop."""
    from fluxbed.pipeline_sae import pipeline_and_sae  # tests/ is on sys.path (pytest's rootdir conftest)

    from saekit.testbed.fluxbed.clip import ClipTrainConfig, train_clip
    from saekit.testbed.fluxbed.config import ci_config

    tmp_path = tmp_path_factory.mktemp("concept_sweep")
    path, sae = pipeline_and_sae(tmp_path)
    clip_dir = tmp_path / "clip"
    clip_cfg = ClipTrainConfig(n_pairs=512, steps=30, batch=64, width=32, layers=1)
    train_clip(ci_config(), clip_dir, clip_cfg, quiet=True)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# testbed captions\n" + "\n".join(CAPTIONS) + "\n\n")
    return path, clip_dir, sae, prompts


def _sweep(parts, out, *extra: str) -> dict:
    path, clip_dir, sae, prompts = parts
    assert cli(["sweep", "--model", str(path), "--sae", str(sae), "--concept", "red",
                "--prompts", str(prompts), "--clip-judge", str(clip_dir), "--methods", "additive",
                "--n-select", "2", "--n-train", "2",
                "--n-test", "3", "--num-inference-steps", "2", "--height", "32", "--width", "32",
                "--max-sequence-length", "512", "--dtype", "float32", "--device", "cpu", "--batch", "4",
                "--out", str(out), "--quiet", *extra]) == 0  # fmt: skip
    return json.loads((out / "results.json").read_text())


def test_concept_sweep_end_to_end_strength_zero_scores_the_unsteered_images(flux_parts, tmp_path):
    from saekit.sweep.clip_judge import ClipJudge
    from saekit.testbed.fluxbed.build import generate, load_pipeline

    path, clip_dir, _, _ = flux_parts
    out = tmp_path / "sweep"
    res = _sweep(flux_parts, out, "--strengths", "0", "--windows", "all", "late")
    t, sp = res["test"], res["splits"]
    assert (out / "table.md").is_file() and (out / "contact.png").stat().st_size > 0
    assert len(sp["test"]) == 3 and not set(sp["test"]) & (set(sp["train"]) | set(sp["selection"]))
    assert sorted(g["config"] for g in res["train_grid"]) == [
        "diffmean:additive:0:all:cond", "diffmean:additive:0:late:cond",
        "sae:additive:0:all:cond", "sae:additive:0:late:cond"]  # fmt: skip
    # independent: the pipeline's own images of the test prompts, judged here
    pipe, judge = load_pipeline(path), ClipJudge(str(clip_dir))
    base = generate(pipe, sp["test"], 0, 2, 4)
    margin = judge.concept_margin(base, [f"{p}, red" for p in sp["test"]], sp["test"])
    assert t["unsteered"]["success"] == pytest.approx(float((margin > 0).mean()))
    assert t["unsteered"]["margin"] == pytest.approx(float(margin.mean()), abs=1e-5)
    assert t["unsteered"]["clip_similarity"] == pytest.approx(1.0, abs=1e-5) and t["unsteered"]["kept"] == 1.0
    for arm in ("sae", "diffmean"):  # strength 0 leaves the images as they were
        assert t[arm]["faithful_success"] == t["unsteered"]["faithful_success"], arm
        assert t[arm]["margin"] == pytest.approx(t["unsteered"]["margin"], abs=1e-6), arm
    assert t["sae_minus_diffmean"]["difference"] == 0.0
    assert len(res["features"]) == 1


def test_cfg_branch_is_a_grid_axis_and_a_real_push_changes_the_images(flux_parts, tmp_path):
    """With true CFG, editing the conditional, the unconditional or both calls are three configurations;
    a push of 8x the measured shift gives images that are not the unsteered ones."""
    res = _sweep(flux_parts, tmp_path / "cfg", "--strengths", "8", "--true-cfg-scale", "2",
                 "--branches", "cond", "uncond", "both")  # fmt: skip
    labels = sorted(g["config"] for g in res["train_grid"])
    want = [f"{a}:additive:8:all:{b}" for a in ("sae", "diffmean") for b in ("cond", "uncond", "both")]
    assert labels == sorted(want)
    grid = {g["config"]: g for g in res["train_grid"]}
    assert grid["diffmean:additive:8:all:cond"]["ssim"] < 0.999  # an untrained pipeline moves a little
    cond, unc = grid["diffmean:additive:8:all:cond"], grid["diffmean:additive:8:all:uncond"]
    assert cond["ssim"] != unc["ssim"]
    assert res["test"]["unsteered"]["clip_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_prompt_file_lines_may_give_the_concept_version_after_a_tab(tmp_path):
    from saekit.sweep.image_concept import read_prompts

    f = tmp_path / "p.txt"
    f.write_text("# comment\na yellow 5\ta red 5\n\na photo of a cat\na yellow 5\ta blue 5\n")
    assert read_prompts(str(f)) == {"a yellow 5": "a red 5", "a photo of a cat": None}  # first line wins
    f.write_text("a yellow 5\t\n")
    with pytest.raises(SteeringError, match="p.txt:1: a tab must separate two prompts"):
        read_prompts(str(f))
    with pytest.raises(SteeringError, match="not found"):
        read_prompts(str(tmp_path / "missing.txt"))


def test_judged_selection_picks_the_latent_whose_top_images_clip_reads_as_the_concept(flux_parts, tmp_path):
    """`--select judged`: the feature equals `judged_features` of the selection prompts' latents and the
    CLIP judge's reading of their images, recomputed here."""
    import saekit
    from saekit.steer.image.concept import judged_features
    from saekit.sweep.clip_judge import ClipJudge
    from saekit.sweep.image_runner import Generation, PipelineRunner
    from saekit.testbed.fluxbed.build import load_pipeline

    path, clip_dir, sae, _ = flux_parts
    res = _sweep(flux_parts, tmp_path / "judged", "--strengths", "0", "--select", "judged")
    sel = res["splits"]["selection"]
    on = [f"{p}, red" for p in sel]
    r = PipelineRunner(load_pipeline(path), saekit.load(str(sae), device="cpu"),
                       Generation(2, 32, 32, max_sequence_length=512, batch=4, seed=0))  # fmt: skip
    f_off, f_on = r.capture(sel)[1], r.capture(on)[1]
    margin = ClipJudge(str(clip_dir)).concept_margin(r.generate(sel + on), on + on, sel + sel)
    want = judged_features(torch.cat([f_off, f_on]), torch.tensor(margin > 0, dtype=torch.float32), 1)[0]
    assert res["features"] == want and res["config"]["select"] == "judged"
