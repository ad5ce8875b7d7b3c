"""Merging per-layer sweeps: the layers grid reports, per layer, what that layer's own run reports."""

from __future__ import annotations

import pytest

from saekit.errors import SteeringError
from saekit.sweep.merge import format_layer_grid, layer_grid, merge_records, merge_sweeps
from saekit.sweep.protocol import protocol_table

SPLITS = {0: "train", 1: "train", 2: "test", 3: "test"}


def _rec(layer, arm, concept, pi, strength, overall):
    return {"layer": layer, "arm": arm, "concept": concept, "prompt_idx": pi, "split": SPLITS[pi],
            "strength": strength, "overall": overall, "concept_score": overall, "fluency": 1.0,
            "relevance": 1.0}  # fmt: skip


def _doc(layer: int, good: str, dm: float) -> dict:
    """A run where `good` strength wins on train for input:additive (test value 0.6 there, 0.1 at the
    other), DiffMean scores `dm` everywhere; baselines unsteered 0 / prompting 0.5."""
    recs = []
    for c in ("sea", "war"):
        for pi in SPLITS:
            recs += [_rec(-1, "unsteered", c, pi, "0", 0.0), _rec(-1, "prompting", c, pi, "prompt", 0.5)]
            for s in ("a", "b"):
                recs.append(_rec(layer, "input:additive", c, pi, s, 0.6 if s == good else 0.1))
                recs.append(_rec(layer, "diffmean", c, pi, s, dm))
    return {"records": recs, "concepts": [], "seconds": 1.0}


def test_grid_per_layer_matches_each_run_alone():
    d5, d20 = _doc(5, "a", 0.4), _doc(20, "b", 0.7)
    merged = merge_sweeps([d5, d20])
    grid = layer_grid(merged.records)
    assert grid["layers"] == [5, 20]
    for layer, doc in ((5, d5), (20, d20)):
        alone = {r["arm"]: r for r in protocol_table(doc["records"])["per_layer"] if r["layer"] == layer}
        for arm in ("input:additive", "diffmean"):
            assert grid["cells"][arm, layer]["overall"] == pytest.approx(alone[arm]["overall"])
    assert grid["cells"]["input:additive", 5]["overall"] == pytest.approx(0.6)
    assert grid["best_sae_vs_diffmean"][5]["difference"] == pytest.approx(0.2)
    assert grid["best_sae_vs_diffmean"][20]["difference"] == pytest.approx(-0.1)
    # baselines kept once: 2 concepts x 4 prompts x 2 arms
    assert sum(r["layer"] == -1 for r in merged.records) == 16
    text = format_layer_grid(grid, merged.records)
    assert "+0.200" in text and "-0.100" in text and "prompting (no layer) | 0.500" in text


def test_merge_refuses_duplicates_and_other_protocols():
    with pytest.raises(SteeringError, match="layer 5 arm"):
        merge_records([_doc(5, "a", 0.4), _doc(5, "b", 0.4)])
    other = _doc(10, "a", 0.4)
    other["records"] = [r for r in other["records"] if r["concept"] == "sea"]
    with pytest.raises(SteeringError, match="other concepts/prompts"):
        merge_records([_doc(5, "a", 0.4), other])


def test_per_concept_choice_takes_each_concepts_best_train_arm():
    from saekit.steer.concept.recipes import recipe_from_document, recipes_document
    from saekit.sweep.protocol import sae_per_concept

    doc = _doc(15, "a", 0.4)
    for pi in SPLITS:  # output:additive wins on war's train prompts only
        doc["records"].append(_rec(15, "output:additive", "war", pi, "b", 0.9))
        doc["records"].append(_rec(15, "output:additive", "sea", pi, "b", 0.0))
    pc = sae_per_concept(doc["records"])
    assert pc["choice"] == {"sea": ["input:additive", 15, "a"], "war": ["output:additive", 15, "b"]}
    assert pc["sae_test"] == pytest.approx((0.6 + 0.9) / 2)
    assert pc["difference"] == pytest.approx((0.6 + 0.9) / 2 - 0.4)
    recipe = recipe_from_document(recipes_document(doc["records"], "t"), "t")
    assert (recipe.arm, recipe.strength) == ("input:additive", "a")  # best over all concepts on train
    war = recipe.for_concept("war", 15)
    assert (war.arm, war.strength) == ("output:additive", "b")
    assert recipe.for_concept("war", 5) is recipe and recipe.for_concept("music", 15) is recipe
