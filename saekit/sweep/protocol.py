"""The honest protocol over sweep records: choose on train prompts, report on test prompts, with intervals.

Per (arm, concept) the strength (and, for the `best layer` rows, the layer) with the highest mean
overall score on the *train* prompts is chosen (the rule is `saekit.steer.concept.recipes.choose_on_train`,
the one `saekit steer --concept` reads its recipes by); the reported number is the mean over the *test*
prompts at that choice, with a bootstrap 95% interval over (concept, prompt) pairs. Choosing and
scoring on the same prompts (what the old sweep did) rewards an arm for noise it happened to fit.
The best SAE arm is itself chosen on train, and its paired difference to DiffMean (same concept,
same test prompt) gets an interval too, so "reaches DiffMean" is a statement with an error bar.
Pure functions over lists of dicts; no model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from statistics import fmean

from saekit.steer.concept.arms import is_sae_arm
from saekit.steer.concept.recipes import choose_on_train, choose_sae_per_concept, group_records

SINGLE_POINT = ("unsteered", "prompting")
METRICS = ("overall", "concept_score", "fluency", "relevance")


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the mean, resampling `values` (one per unit) with replacement."""
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(values)
    means = sorted(fmean(rng.choices(values, k=n)) for _ in range(n_boot))
    return (means[int(0.025 * n_boot)], means[min(n_boot - 1, int(0.975 * n_boot))])


def rows_at_choice(records: list[dict], choice: dict[tuple, tuple], over_layers: bool = False) -> list[dict]:
    """The test records at the train-chosen strength (and layer)."""
    out = []
    for r in records:
        if r["split"] != "test":
            continue
        if over_layers:
            if choice.get((r["arm"], r["concept"])) == (r["layer"], r["strength"]):
                out.append(r)
        elif choice.get((r["layer"], r["arm"], r["concept"])) == r["strength"]:
            out.append(r)
    return out


def summarize_rows(rows: list[dict], seed: int = 0) -> dict:
    """Means of every metric, the bootstrap interval of `overall`, and n (concept, prompt) units."""
    vals = [r["overall"] for r in rows]
    lo, hi = bootstrap_ci(vals, seed=seed)
    return {
        "n": len(rows),
        **{m: fmean(r[m] for r in rows) if rows else None for m in METRICS},
        "ci": [lo, hi],
    }


def protocol_table(records: list[dict], seed: int = 0) -> dict:
    """Per (layer, arm) and per arm at its train-chosen layer: test means with intervals; best SAE arm vs
    DiffMean as a paired difference."""
    per_layer, chosen = [], choose_on_train(records)
    at_choice = rows_at_choice(records, chosen)
    for (layer, arm), rows in sorted(group_records(at_choice, ("layer", "arm")).items()):
        strengths = sorted({str(r["strength"]) for r in rows})
        per_layer.append({"layer": layer, "arm": arm, "strengths": strengths, **summarize_rows(rows, seed)})
    layer_choice = choose_on_train(records, over_layers=True)
    best_layer = []
    for (arm,), rows in sorted(group_records(rows_at_choice(records, layer_choice, True), ("arm",)).items()):
        layers = sorted({r["layer"] for r in rows})
        best_layer.append({"layer": "chosen", "arm": arm, "layers": layers, **summarize_rows(rows, seed)})
    return {
        "per_layer": per_layer,
        "best_layer": best_layer,
        "best_sae_vs_diffmean": best_sae_vs_diffmean(records, layer_choice, seed),
        "sae_per_concept": sae_per_concept(records, seed),
    }


def best_sae_vs_diffmean(records: list[dict], layer_choice: dict, seed: int = 0) -> dict | None:
    """The SAE arm with the best *train* mean (at its chosen layer/strength) against DiffMean on test."""
    train = [r for r in records if r["split"] == "train"]
    arms = sorted({r["arm"] for r in records if is_sae_arm(r["arm"])})
    if not arms or not any(r["arm"] == "diffmean" for r in records):
        return None

    def train_mean(arm: str) -> float:
        keep = [
            r
            for r in train
            if r["arm"] == arm and layer_choice.get((arm, r["concept"])) == (r["layer"], r["strength"])
        ]
        return fmean(r["overall"] for r in keep) if keep else float("-inf")

    best = max(arms, key=train_mean)
    test = rows_at_choice(records, layer_choice, True)
    sae = {(r["concept"], r["prompt_idx"]): r["overall"] for r in test if r["arm"] == best}
    dm = {(r["concept"], r["prompt_idx"]): r["overall"] for r in test if r["arm"] == "diffmean"}
    diffs = [sae[k] - dm[k] for k in sae if k in dm]
    lo, hi = bootstrap_ci(diffs, seed=seed)
    return {
        "arm": best,
        "sae_test": fmean(sae.values()) if sae else None,
        "diffmean_test": fmean(dm.values()) if dm else None,
        "difference": fmean(diffs) if diffs else None,
        "difference_ci": [lo, hi],
        "n_pairs": len(diffs),
    }


def sae_per_concept(records: list[dict], seed: int = 0) -> dict | None:
    """Test mean of the per-concept SAE choice, and its paired difference to DiffMean (DiffMean's layer
    and strength also chosen per concept on train)."""
    choice = choose_sae_per_concept(records)
    dm_choice = choose_on_train([r for r in records if r["arm"] == "diffmean"], over_layers=True)
    if not choice or not dm_choice:
        return None
    test = [r for r in records if r["split"] == "test"]
    unit = lambda r: (r["concept"], r["prompt_idx"])  # noqa: E731
    sae = {
        unit(r): r["overall"]
        for r in test
        if choice.get(r["concept"]) == (r["arm"], r["layer"], r["strength"])
    }
    dm = {
        unit(r): r["overall"]
        for r in test
        if r["arm"] == "diffmean" and dm_choice.get(("diffmean", r["concept"])) == (r["layer"], r["strength"])
    }
    diffs = [sae[k] - dm[k] for k in sae if k in dm]
    return {
        "choice": {c: list(v) for c, v in choice.items()},
        "sae_test": fmean(sae.values()) if sae else None,
        "sae_ci": list(bootstrap_ci(list(sae.values()), seed=seed)),
        "diffmean_test": fmean(dm.values()) if dm else None,
        "difference": fmean(diffs) if diffs else None,
        "difference_ci": list(bootstrap_ci(diffs, seed=seed)),
        "n_pairs": len(diffs),
    }


def arm_difference(records: list[dict], arm_a: str, arm_b: str, seed: int = 0) -> dict | None:
    """`arm_a − arm_b` on test, each at its own train-chosen layer and strength per concept, paired over
    (concept, prompt), with a bootstrap interval (e.g. `sparse:additive` vs `free`: the price of
    sparsity). None when either arm is missing."""
    choice = choose_on_train(records, over_layers=True)
    test = rows_at_choice(records, choice, True)
    a = {(r["concept"], r["prompt_idx"]): r["overall"] for r in test if r["arm"] == arm_a}
    b = {(r["concept"], r["prompt_idx"]): r["overall"] for r in test if r["arm"] == arm_b}
    diffs = [a[k] - b[k] for k in a if k in b]
    if not diffs:
        return None
    return {
        "a": arm_a,
        "b": arm_b,
        "a_test": fmean(a.values()),
        "b_test": fmean(b.values()),
        "difference": fmean(diffs),
        "difference_ci": list(bootstrap_ci(diffs, seed=seed)),
        "n_pairs": len(diffs),
    }
