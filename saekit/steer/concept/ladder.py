"""The verification ladder of `saekit steer --concept`: stronger pushes, then other arms, judged offline.

The sweep chooses a strength per concept on its *train* prompts; a user's prompt can pull harder than
those (a poem about the sea resists "war": at the chosen 0.5norm every SAE arm's continuation scored
concept 0). With a judge, `steer_concept` walks `Stage`s in order (`steering.escalation_stages`: the
recipe's arm at 1x and 2x its strength, then the DiffMean vector written in SAE decoder directions,
then DiffMean itself, the non-SAE fallback); it stops at the first try whose concept score reaches
`MIN_CONCEPT` while the text stays readable, and keeps that one, else the one with the best overall
score. Every try is reported, so the choice made on the user's prompt is visible, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

FACTORS = (1.0, 2.0)
"""Multiples of the recipe's strength, tried in order (4x was dropped: on the protocol concepts it kept
fluency >= 0.3 on no prompt and carried nothing 1x and 2x had not; docs/results/steer_carry)."""
MIN_CONCEPT = 0.5
"""Concept score (0 = as the unsteered text, 1 = as the judge's own texts about the concept) that counts
as seen. 0.5 was chosen on the protocol concepts for a verdict the independent judge confirms (per try:
precision 0.93 there; 0.2, the earlier value, gave 0.47) and confirmed on the held-out concepts
(docs/results/concept_judge)."""
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
        return visible(self.scores)


def visible(scores: dict) -> bool:
    """Whether judge scores count as the concept carried: concept at least `MIN_CONCEPT` and fluency at
    least `MIN_FLUENCY` (the ladder's stopping rule and `saekit steer`'s verdict)."""
    return scores["concept_score"] >= MIN_CONCEPT and scores["fluency"] >= MIN_FLUENCY


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


@dataclass(frozen=True)
class Stage:
    """One arm of the ladder and the multiples of its base strength tried, in order."""

    label: str
    """Name in reports (the arm's name, e.g. `decompose:additive`)."""
    arm: object
    """The bound `saekit.steer.concept.arms.Arm`."""
    base: list[float]
    """Absolute strength per feature (one for a direction arm) at factor 1."""
    factors: tuple[float, ...] = FACTORS


def escalate(session, concept, prompt: str, gen, stages, pair, judge):
    """(kept pair, kept arm, kept strengths, every try, (unsteered, kept) judge scores).

    `stages` are tried in order (each at its factors) until a try is visible; `pair` is the first
    stage's try at its first factor (already generated). Every try is judged against `concept` (the
    caller passes one whose texts no feature was chosen from: `steering.judged_concept`). A non-SAE
    stage (DiffMean) goes last and is reported as such."""
    import torch

    from saekit.steer.concept.arms import arm_edit
    from saekit.steer.concept.judging import PairJudge
    from saekit.steer.generate import SteeredPair

    plan = [(st, f, [f * x for x in st.base]) for st in stages for f in st.factors]
    tries, pairs, arms = [], [], []
    score = PairJudge(session.lm.model, judge, concept, prompt, pair.unsteered)
    for n, (st, f, s) in enumerate(plan):
        label, a = st.label, st.arm
        if n > 0:
            edit = arm_edit(a, session.sae, torch.tensor([s], device=session.sae.device))
            pair = SteeredPair(prompt, pair.unsteered, steered_text(session, prompt, gen, edit))
        scores = score(pair.steered)
        tries.append(Try(f, s, {**scores, "arm": label}))
        pairs.append(pair)
        arms.append(a)
        if tries[-1].visible():
            break
    i = pick(tries)
    kept = {k: v for k, v in tries[i].scores.items() if k != "arm"}
    return pairs[i], arms[i], tries[i].strengths, tries, (score.plain, kept)
