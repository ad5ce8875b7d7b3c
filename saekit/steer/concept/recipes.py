"""Which arm and strength `saekit steer --concept` uses: chosen on the sweep's *train* prompts.

A sweep measures every SAE arm x strength per concept. For a concept the sweep measured, the arm and
strength with the best train mean *for that concept* are used (on the bundled layer-15 protocol this
per-concept choice scored 0.470 [0.386, 0.552] on the test prompts against DiffMean's 0.427, where one
arm for every concept scored 0.394); for other words the one arm that was best over all concepts,
at its most often chosen strength. Without `--sweep` the bundled table
`saekit/steer/concept/data/concept_recipes.json` (made from docs/results/sweep_protocol by
`recipes_document`) applies when the SAE sits at the layer it was measured at.

The choice rule itself (`choose_on_train`, `choose_sae_per_concept`: the best train mean per arm and
concept) lives here, because a recipe *is* that choice and steering must not import `saekit.sweep`;
`saekit.sweep.protocol` reports test means at the same choices.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean

from saekit.errors import SteeringError
from saekit.steer.concept.arms import is_sae_arm

BUNDLED = Path(__file__).parent / "data" / "concept_recipes.json"


@dataclass(frozen=True)
class Recipe:
    """Which arm and strength to steer a concept with."""

    arm: str
    """`selection:method` (see saekit.steer.concept.arms)."""
    strength: str
    """Strength with unit (e.g. `0.5norm`)."""
    source: str
    """Where it came from: a sweep.json path or `default`."""
    per_concept: tuple[tuple[str, str, str, int], ...] = ()
    """(concept, arm, strength, layer) chosen per concept on train prompts; used for that concept at
    that layer instead of `arm` / `strength`."""

    def for_concept(self, concept: str, layer: int | None) -> Recipe:
        """This recipe narrowed to `concept` at `layer` (unchanged when the sweep did not measure it)."""
        for name, arm, strength, at in self.per_concept:
            if name == concept and (layer is None or at == layer):
                return replace(self, arm=arm, strength=strength, source=f"{self.source} ({concept}, train)",
                               per_concept=())  # fmt: skip
        return self


def group_records(records: Iterable[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    """Records grouped by the values of `keys` (a tuple per group), in first-seen order."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def choose_on_train(records: list[dict], over_layers: bool = False) -> dict[tuple, tuple]:
    """`(layer, arm, concept)` -> chosen strength.

    With `over_layers`: `(arm, concept)` -> `(layer, strength)`. Arms that do not depend on the layer
    (unsteered, prompting) are recorded with layer -1.
    """
    train = [r for r in records if r["split"] == "train"]
    means = {
        k: fmean(r["overall"] for r in v)
        for k, v in group_records(train, ("layer", "arm", "concept", "strength")).items()
    }
    best: dict[tuple, tuple] = {}
    for (layer, arm, concept, strength), m in means.items():
        key = (arm, concept) if over_layers else (layer, arm, concept)
        choice = (layer, strength) if over_layers else (strength,)
        if key not in best or m > best[key][0]:
            best[key] = (m, *choice)
    return {k: v[1:] if over_layers else v[1] for k, v in best.items()}  # fmt: skip


def choose_sae_per_concept(records: list[dict]) -> dict[str, tuple]:
    """concept -> (arm, layer, strength): the SAE arm, layer and strength with the best *train* mean for
    that concept (what `saekit steer --concept` uses for a bundled concept)."""
    means = {
        k: fmean(r["overall"] for r in v)
        for k, v in group_records(
            [r for r in records if r["split"] == "train" and is_sae_arm(r["arm"])],
            ("concept", "arm", "layer", "strength"),
        ).items()
    }
    best: dict[str, tuple] = {}
    for (concept, arm, layer, strength), m in means.items():
        if concept not in best or m > best[concept][0]:
            best[concept] = (m, arm, layer, strength)
    return {c: v[1:] for c, v in best.items()}


def best_sae_arm(records: list[dict]) -> str:
    """The SAE arm with the best train mean at its per-concept train-chosen layer and strength."""
    choice = choose_on_train(records, over_layers=True)
    means: dict[str, list[float]] = {}
    for r in records:
        if r["split"] == "train" and is_sae_arm(r["arm"]):
            if choice.get((r["arm"], r["concept"])) == (r["layer"], r["strength"]):
                means.setdefault(r["arm"], []).append(r["overall"])
    if not means:
        raise SteeringError("the sweep has no SAE arm measured on train prompts; nothing to choose")
    return max(means, key=lambda a: fmean(means[a]))


def recipes_document(records: list[dict], source: str, arm: str | None = None) -> dict:
    """The global (`arm`, default: `best_sae_arm`) and per-concept choices of a sweep's records (the
    bundled table's format)."""
    arm = arm or best_sae_arm(records)
    picks = Counter(st for (_, a, _), st in choose_on_train(records).items() if a == arm)
    if not picks:
        raise SteeringError(f"{source}: no strength was chosen for {arm}")
    per = choose_sae_per_concept(records)
    return {
        "schema_version": 1,
        "source": source,
        "arm": arm,
        "strength": picks.most_common(1)[0][0],
        "per_concept": [
            {"concept": c, "arm": a, "strength": s, "layer": lay} for c, (a, lay, s) in per.items()
        ],
    }


def recipe_from_document(doc: dict, source: str) -> Recipe:
    per = tuple((e["concept"], e["arm"], e["strength"], int(e["layer"])) for e in doc.get("per_concept", []))
    return Recipe(doc["arm"], doc["strength"], source, per)


def recipe_from_sweep(path: str | Path) -> Recipe:
    """The sweep's recipe: per concept where it measured the concept, else its best SAE arm overall
    (the protocol table's train-chosen best SAE arm when the file has one)."""
    try:
        doc = json.loads(Path(path).read_text())
        records = doc["records"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"{path}: not a saekit sweep.json with records ({exc}); rerun saekit sweep"
        raise SteeringError(msg) from exc
    best = ((doc.get("protocol") or {}).get("best_sae_vs_diffmean") or {}).get("arm")
    return recipe_from_document(recipes_document(records, str(path), best), str(path))


def bundled_recipe() -> Recipe:
    """The table measured by docs/results/sweep_protocol (SmolLM2 layer 15), source `default`."""
    return recipe_from_document(json.loads(BUNDLED.read_text()), "default")
