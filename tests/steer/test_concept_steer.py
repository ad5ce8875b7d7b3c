"""`saekit steer --concept`: concept lookup, the recipe read back from a sweep, and concept steering on a
tiny LM whose planted feature writes the concept's token."""

import json

import torch

from saekit.steer.concept.concepts import Concept
from saekit.steer.concept.judging import format_scores, judge_pair
from saekit.steer.concept.recipes import Recipe, recipe_from_sweep
from saekit.steer.concept.steering import concept_texts, steer_concept
from saekit.steer.generate import GenerationConfig

from .conftest import planted_sae
from .test_sweep import FakeJudge


def test_concept_texts_match_a_bundled_concept_or_fall_back_to_templates():
    c, others = concept_texts("war")
    assert c.name == "war" and len(c.texts) >= 6 and not set(c.texts) & set(others)
    c, others = concept_texts("origami folding")
    assert all("origami folding" in t.lower() for t in c.texts) and len(others) >= 60


def test_recipe_from_sweep_takes_the_best_sae_arm_and_its_most_chosen_train_strength(tmp_path):
    def rec(arm, concept, strength, split, overall):
        return {"layer": 15, "arm": arm, "concept": concept, "strength": strength, "split": split,
                "overall": overall, "prompt_idx": 0}  # fmt: skip

    out = "output:additive"
    records = [
        rec(out, "a", "0.25norm", "train", 0.2), rec(out, "a", "0.5norm", "train", 0.6),
        rec(out, "b", "0.25norm", "train", 0.1), rec(out, "b", "0.5norm", "train", 0.3),
        rec("input:clamp", "a", "0.25norm", "train", 0.9),
    ]  # fmt: skip
    doc = {"protocol": {"best_sae_vs_diffmean": {"arm": "output:additive"}}, "records": records}
    (tmp_path / "sweep.json").write_text(json.dumps(doc))
    r = recipe_from_sweep(tmp_path / "sweep.json")
    assert (r.arm, r.strength) == ("output:additive", "0.5norm")


def test_steer_concept_on_a_planted_feature_writes_the_concept_token(tiny_lm, tiny_tokenizer):
    from saekit.models import LoadedModel
    from saekit.steer.calibration import measure
    from saekit.steer.session import SteerSession

    hp = "model.layers.1"
    sae = planted_sae(tiny_lm, 17, hook_point=hp)
    cal = measure(sae, [torch.randn(64, 32) * 0.5])
    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    session = SteerSession(sae, "", cal, lm, hp)
    concept = Concept("seventeen", "w17", ("w17 w3 w17 w17 w5", "w17 w17 w9 w17", "w2 w17 w17"))
    others = ["w1 w2 w3 w1 w2", "w2 w1 w4 w2", "w5 w6 w7 w8"]
    gen = GenerationConfig(max_new_tokens=6, chat=False)
    recipe = Recipe("output:additive", "4norm", "test")
    res = steer_concept(session, "seventeen", "w1 w2 w3", gen, recipe=recipe, texts=(concept, others))
    assert res.arm.features == (3,)  # the planted output feature
    assert res.pair.steered.text.count("w17") > res.pair.unsteered.text.count("w17")
    plain, steered = judge_pair(tiny_lm, FakeJudge(), concept, "w1 w2 w3", res.pair)
    assert plain["concept_score"] == 0.0  # the unsteered text is the concept judge's zero
    assert steered["concept_cos"] > plain["concept_cos"]
    assert "steered" in format_scores(plain, steered)
