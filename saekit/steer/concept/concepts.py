"""Concepts for sweeps: a name, a description (the judge's target) and short reference texts.

The texts serve three purposes: picking the SAE feature (largest mean activation on the concept's
texts minus on the others'), the DiffMean direction (same contrast on raw activations), and the
concept judge's 0/1 anchors. Users pass their own with `--concepts file.json`
(`[{"name": ..., "description": ..., "texts": [...], "feature": optional int}]`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from saekit.errors import SteeringError


@dataclass(frozen=True)
class Concept:
    """One steering target."""

    name: str
    """Short name used in tables and plots."""
    description: str
    """What the steered text should be about (compared with MiniLM)."""
    texts: tuple[str, ...]
    """Reference texts clearly about the concept."""
    feature: int | None = None
    """SAE feature to steer; None = picked automatically from the texts."""
    extra: dict = field(default_factory=dict, compare=False)
    """Anything else from the JSON (kept in the output)."""


BUILTIN: tuple[Concept, ...] = (
    Concept(
        "ocean",
        "the ocean, the sea, waves, ships and sailors",
        (
            "The waves crashed against the rocks as the tide came in over the sandy beach.",
            "Sailors hoisted the sails and the ship left the harbour for the open sea.",
            "Deep in the ocean, whales and dolphins swim through the cold blue water.",
            "The salty sea breeze carried the cries of gulls over the shore.",
            "A storm at sea tossed the little boat from wave to wave.",
            "The captain steered the vessel across the Atlantic Ocean.",
            "Coral reefs and fish fill the warm tropical waters of the sea.",
            "We walked along the coast and watched the surf roll onto the sand.",
        ),
    ),
    Concept(
        "food",
        "food, cooking, recipes and eating delicious meals",
        (
            "Chop the onions, fry them in butter, and add the garlic and tomatoes.",
            "The bakery smelled of fresh bread, warm croissants and chocolate cake.",
            "For dinner we ate roasted chicken with potatoes and a green salad.",
            "Stir the soup slowly and season it with salt, pepper and fresh herbs.",
            "She baked a delicious apple pie with cinnamon and sugar.",
            "The chef grilled the steak and served it with rice and vegetables.",
            "Breakfast was eggs, bacon, toast and a cup of coffee.",
            "Mix the flour, milk and eggs to make a smooth pancake batter.",
        ),
    ),
    Concept(
        "war",
        "war, battles, soldiers, weapons and fighting",
        (
            "The soldiers marched to the front line as the cannons fired.",
            "The army attacked the enemy fortress at dawn with swords and spears.",
            "Bombs fell on the city during the long and bloody war.",
            "The general ordered his troops to charge across the battlefield.",
            "Many warriors died in the battle, and the survivors retreated.",
            "Tanks and infantry advanced while fighter planes flew overhead.",
            "The knights drew their weapons and rode into the fight.",
            "After years of war, the two nations finally signed a peace treaty.",
        ),
    ),
    Concept(
        "love",
        "love, romance, affection and falling in love",
        (
            "She looked into his eyes and knew she had fallen in love.",
            "He wrote her a romantic letter telling her how much he adored her.",
            "The couple held hands and kissed under the stars.",
            "My heart beats faster whenever my sweetheart smiles at me.",
            "They married in the spring, deeply in love with each other.",
            "He gave her red roses and whispered that he loved her.",
            "Romance blossomed between the two young lovers that summer.",
            "I love you more than words can say, my darling.",
        ),
    ),
    Concept(
        "religion",
        "God, prayer, religion, faith and the church",
        (
            "The people prayed to God in the church every Sunday morning.",
            "The priest read a passage from the Bible about faith and mercy.",
            "Lord, hear our prayer and forgive us our sins.",
            "The faithful gathered in the temple to worship and sing hymns.",
            "Blessed are those who believe in the Lord and follow his word.",
            "The monks spent their days in prayer and quiet devotion.",
            "She lit a candle in the cathedral and prayed for her family.",
            "The prophet spoke of heaven, angels and the glory of God.",
        ),
    ),
)


DATA_DIR = Path(__file__).parent / "data"
PROTOCOL_CONCEPTS = DATA_DIR / "concepts.json"
"""The protocol's 12 concepts (description + 6 sentences each), written for saekit."""
PROTOCOL_PROMPTS = DATA_DIR / "prompts.json"
"""The protocol's 10 neutral instructions, split 5 train / 5 test."""


def load_prompts(spec: str = "protocol", n_train: int | None = None, n_test: int | None = None):
    """`(train, test)` instruction lists from `protocol` (the bundled file) or a JSON file
    `{"train": [...], "test": [...]}`; `n_train` / `n_test` keep the first n of each."""
    path = PROTOCOL_PROMPTS if spec == "protocol" else Path(spec)
    try:
        doc = json.loads(path.read_text())
        train, test = list(doc["train"])[:n_train], list(doc["test"])[:n_test]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SteeringError(
            f'prompts {spec!r}: expected \'protocol\' or a JSON file {{"train": [...], "test": [...]}}: {exc}'
        ) from exc
    if not train or not test:
        raise SteeringError(f"prompts {spec!r}: need at least one train and one test prompt")
    return train, test


def load_concepts(spec: str = "default", n: int | None = None) -> list[Concept]:
    """`default` -> the built-in 5; `protocol` -> the bundled 12; else a JSON file; `n` keeps the first n."""
    if spec in ("default", "builtin", ""):
        items = list(BUILTIN)
    else:
        path = PROTOCOL_CONCEPTS if spec == "protocol" else Path(spec)
        if not path.is_file():
            raise SteeringError(
                f"concepts file {spec!r} not found; pass 'default', 'protocol' or a JSON list of "
                f"{{name, description, texts, feature?}}"
            )
        try:
            raw = json.loads(path.read_text())
            items = [
                Concept(
                    r["name"],
                    r["description"],
                    tuple(r.get("texts", ())),
                    r.get("feature"),
                    {k: v for k, v in r.items() if k not in ("name", "description", "texts", "feature")},
                )
                for r in raw
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise SteeringError(
                f"{spec}: expected a JSON list of objects with name, description, texts: {exc}"
            ) from exc
    if n is not None:
        items = items[:n]
    if not items:
        raise SteeringError(f"no concepts in {spec!r}")
    for c in items:
        if len(c.texts) < 2 and c.feature is None:
            raise SteeringError(f"concept {c.name!r} needs >= 2 reference texts (or an explicit feature)")
    return items
