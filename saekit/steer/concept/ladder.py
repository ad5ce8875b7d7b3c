"""Strength escalation for `saekit steer --concept`: the sweep's strength, then 2x and 4x, judged offline.

The sweep chooses a strength per concept on its *train* prompts; a user's prompt can pull harder than
those (a poem about the sea resists "war": at the chosen 0.5norm every SAE arm's continuation scored
concept 0). With a judge, `steer_concept` tries the chosen strength first and, while the concept
score stays under `MIN_CONCEPT` or the text stops being readable, the next factor; it keeps the first
try that is both visible and fluent, else the one with the best overall score. Every try is reported,
so the choice made on the user's prompt is visible, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

FACTORS = (1.0, 2.0, 4.0)
"""Multiples of the recipe's strength, tried in order."""
MIN_CONCEPT = 0.2
"""Concept score (0 = as the unsteered text, 1 = as the concept's own sentences) that counts as seen."""
MIN_FLUENCY = 0.3
"""Fluency under which a continuation is not kept even when the concept shows."""


@dataclass(frozen=True)
class Try:
    """One strength tried on the user's prompt."""

    factor: float
    strengths: list[float]
    """Absolute strength per feature."""
    scores: dict
    """Judge scores of the steered text (concept_score, fluency, relevance, overall, ...)."""

    def visible(self) -> bool:
        return self.scores["concept_score"] >= MIN_CONCEPT and self.scores["fluency"] >= MIN_FLUENCY


def pick(tries: list[Try]) -> int:
    """Index of the try to keep: the first visible one, else the best overall (then concept score)."""
    for i, t in enumerate(tries):
        if t.visible():
            return i
    return max(
        range(len(tries)), key=lambda i: (tries[i].scores["overall"], tries[i].scores["concept_score"])
    )


def steered_text(session, prompt: str, gen, edit):
    """The steered continuation alone (the unsteered one is generated once by the caller)."""
    from saekit.steer.apply import steering
    from saekit.steer.generate import decode_rows, encode_prompt, generate_ids

    lm = session.lm
    ids = encode_prompt(lm.tokenizer, prompt, gen.chat)
    eos = getattr(lm.tokenizer, "eos_token_id", None)
    with steering(lm.model, session.hook_point, edit, prompt_len=ids.shape[1]) as tr:
        return decode_rows(lm.tokenizer, generate_ids(lm.model, ids, gen, eos, on_reset=tr.reset), eos)[0]


def escalate(session, concept, prompt: str, gen, arm, base: list[float], pair, judge, factors=FACTORS,
             fallback=None):  # fmt: skip
    """(kept pair, kept arm, kept strengths, every try, (unsteered, kept) judge scores): `pair` is the
    try at factor 1 (already generated). `fallback` = (arm, strengths): tried last when no factor was
    seen (DiffMean: a vector, no SAE; reported as such)."""
    import torch

    from saekit.steer.concept.arms import arm_edit
    from saekit.steer.concept.judging import PairJudge
    from saekit.steer.generate import SteeredPair

    plan = [(arm, f, [f * x for x in base]) for f in factors]
    plan += [(fallback[0], 1.0, list(fallback[1]))] if fallback is not None else []
    tries, pairs, arms = [], [], []
    score = PairJudge(session.lm.model, judge, concept, prompt, pair.unsteered)
    for a, f, s in plan:
        if not (a is arm and f == 1.0):
            edit = arm_edit(a, session.sae, torch.tensor([s], device=session.sae.device))
            pair = SteeredPair(prompt, pair.unsteered, steered_text(session, prompt, gen, edit))
        scores = score(pair.steered)
        tries.append(Try(f, s, {**scores, "arm": a.name}))
        pairs.append(pair)
        arms.append(a)
        if tries[-1].visible():
            break
    i = pick(tries)
    kept = {k: v for k, v in tries[i].scores.items() if k != "arm"}
    return pairs[i], arms[i], tries[i].strengths, tries, (score.plain, kept)
