"""Which arm and strength `saekit steer --concept` uses: chosen on the sweep's *train* prompts.

A sweep measures every SAE arm x strength per concept. For a concept the sweep measured, the arm and
strength with the best train mean *for that concept* are used (on the bundled layer-15 protocol this
per-concept choice scored 0.470 [0.386, 0.552] on the test prompts against DiffMean's 0.427, where one
arm for every concept scored 0.394); for other words the one arm that was best over all concepts,
at its most often chosen strength. Without `--sweep` the bundled table
`saekit/steer/data/concept_recipes.json` (made from docs/results/sweep_protocol by
`recipes_document`) applies when the SAE sits at the layer it was measured at.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from saekit.errors import SteeringError

BUNDLED = Path(__file__).parent / "data" / "concept_recipes.json"


@dataclass(frozen=True)
class Recipe:
    """Which arm and strength to steer a concept with."""

    arm: str
    """`selection:method` (see saekit.steer.arms)."""
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


def recipes_document(records: list[dict], source: str) -> dict:
    """The global and per-concept choices of a sweep's records (the bundled table's format)."""
    from saekit.steer.protocol import best_sae_vs_diffmean, choose_on_train, choose_sae_per_concept

    best = best_sae_vs_diffmean(records, choose_on_train(records, over_layers=True))
    if best is None:
        raise SteeringError(f"{source}: the sweep has no SAE arm beside DiffMean; nothing to choose")
    picks = Counter(st for (_, arm, _), st in choose_on_train(records).items() if arm == best["arm"])
    per = choose_sae_per_concept(records)
    return {
        "schema_version": 1,
        "source": source,
        "arm": best["arm"],
        "strength": picks.most_common(1)[0][0],
        "per_concept": [
            {"concept": c, "arm": a, "strength": s, "layer": lay} for c, (a, lay, s) in per.items()
        ],
    }


def recipe_from_document(doc: dict, source: str) -> Recipe:
    per = tuple((e["concept"], e["arm"], e["strength"], int(e["layer"])) for e in doc.get("per_concept", []))
    return Recipe(doc["arm"], doc["strength"], source, per)


def recipe_from_sweep(path: str | Path) -> Recipe:
    """The sweep's recipe: per concept where it measured the concept, else its best SAE arm overall."""
    try:
        records = json.loads(Path(path).read_text())["records"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SteeringError(
            f"{path}: not a saekit sweep.json with records ({exc}); rerun saekit sweep"
        ) from exc
    return recipe_from_document(recipes_document(records, str(path)), str(path))


def bundled_recipe() -> Recipe:
    """The table measured by docs/results/sweep_protocol (SmolLM2 layer 15), source `default`."""
    return recipe_from_document(json.loads(BUNDLED.read_text()), "default")
