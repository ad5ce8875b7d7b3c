"""Steer toward a concept named in words: `saekit steer --concept "the sea"`.

1. Concept texts: a bundled protocol concept when the words match one (its name, or MiniLM
   similarity ≥ `MATCH_COS` to its description), else short template sentences about the words.
   Other concepts' texts are the contrast.
2. Recipe (which arm, which strength; `saekit.steer.concept.recipes`): from a sweep result (`sweep.json`) or
   the bundled table: for a concept the sweep measured, the SAE arm and strength best on that
   concept's train prompts; else the best SAE arm over all concepts at its usual strength.
3. Features: `saekit.steer.concept.evidence` (outlier features flagged and never chosen), then the arm's edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saekit.errors import SteeringError
from saekit.steer.concept.concepts import Concept, load_concepts, load_prompts
from saekit.steer.concept.recipes import Recipe, bundled_recipe

MATCH_COS = 0.6
TEMPLATES = (
    "Let me tell you about {c}.",
    "{C} is all I can think about today.",
    "This story is about {c}.",
    "Everything here reminds me of {c}.",
    "We talked about {c} for hours.",
    "I read a long book about {c}.",
)


DEFAULT_RECIPE = bundled_recipe()
"""Used without `--sweep`: docs/results/sweep_protocol's choices (saekit.steer.concept.recipes) — per bundled
concept the SAE arm and strength best on its train prompts at layer 15, else the input-selected
feature added at a quarter of the mean activation norm (the best single arm over all concepts)."""


def concept_texts(words: str, judge=None) -> tuple[Concept, list[str]]:
    """(the concept, contrast texts): a bundled concept the words match, else templates."""
    bundled = load_concepts("protocol")
    key = words.strip().lower()
    for c in bundled:
        if key in (c.name, c.description.lower()):
            return c, [t for o in bundled if o is not c for t in o.texts]
    if judge is not None:
        cos = judge.embed([words]) @ judge.embed([c.description for c in bundled]).T
        i = int(cos.argmax())
        if float(cos[0, i]) >= MATCH_COS:
            return bundled[i], [t for o in bundled if o is not bundled[i] for t in o.texts]
    texts = tuple(t.format(c=words, C=words[:1].upper() + words[1:]) for t in TEMPLATES)
    return Concept(key.replace(" ", "_"), words, texts), [t for o in bundled for t in o.texts]


def score_prompt_ids(tokenizer, chat: bool | None, n: int = 2):
    """Token ids of the protocol's first `n` train prompts (where output scores are read)."""
    from saekit.steer.generate import encode_prompt

    train, _ = load_prompts("protocol")
    return [encode_prompt(tokenizer, p, chat) for p in train[:n]]


@dataclass
class ConceptSteer:
    """A concept steered into a prompt's continuation, with the evidence."""

    concept: Concept
    recipe: Recipe
    arm: object
    """The bound `saekit.steer.concept.arms.Arm` (features, weights, direction)."""
    strengths: list[float]
    """Absolute strength per feature (one for a direction arm)."""
    evidence: object
    """`saekit.steer.concept.evidence.ConceptEvidence`."""
    pair: object
    """`saekit.steer.generate.SteeredPair`."""
    tries: list = field(default_factory=list)
    """With escalation: every `saekit.steer.concept.ladder.Try` (factor, strengths, judge scores)."""
    scores: tuple[dict, dict] | None = None
    """With escalation: judge scores of (the unsteered text, the kept steered text)."""


def concept_evidence(session, words: str, *, judge=None, chat: bool | None = None, methods=None, texts=None):
    """Gather every selection for `words` at the session's hook point (`texts`: an explicit
    `(Concept, contrast texts)` instead of looking the words up)."""
    from saekit.steer.concept.arms import SELECTIONS, SUPERVISED_SELECTIONS
    from saekit.steer.concept.evidence import gather_evidence
    from saekit.steer.concept.learned import build_supervision

    concept, others = texts or concept_texts(words, judge)
    lm = session.lm
    train, _ = load_prompts("protocol")
    sup = lambda: build_supervision(lm.model, lm.tokenizer, train, concept.description, chat=chat)  # noqa: E731
    ev = gather_evidence(lm.model, lm.tokenizer, session.sae, session.hook_point, concept.texts, others,
                         score_prompt_ids(lm.tokenizer, chat), cal=session.calibration,
                         methods=methods or [m for m in SELECTIONS if m not in SUPERVISED_SELECTIONS],
                         supervision=sup,
                         description=f"{concept.name} {concept.description}")  # fmt: skip
    return concept, ev


def needed_selections(sel: str) -> list[str]:
    """Selections to run for an arm's selection, in order (SAE-TS targets the output-selected features)."""
    if sel == "diffmean":
        return []
    return ["output", "sae_ts"] if sel == "sae_ts" else [sel]


def steer_concept(
    session,
    words: str,
    prompt: str,
    gen,
    *,
    recipe: Recipe = DEFAULT_RECIPE,
    judge=None,
    texts=None,
    escalate: bool | None = None,
):
    """Pick features for `words` with `recipe.arm`, steer `prompt` at `recipe.strength`.

    `escalate` (default: when a `judge` is given): while the judges do not see the concept in the
    steered text, retry at 2x and 4x the strength, then DiffMean at the recipe's strength
    (`saekit.steer.concept.ladder`); every try is kept in the result's `tries`, and `arm` is the one
    kept (check `arm.name`: `diffmean` means no SAE feature was seen)."""
    import torch

    from saekit.steer.apply import steering
    from saekit.steer.concept.arms import arm_edit, arm_strengths, make_arm, parse_arm
    from saekit.steer.generate import generate_pair
    from saekit.steer.session import layer_of
    from saekit.steer.strength import parse_strength

    texts = texts or concept_texts(words, judge)
    recipe = recipe.for_concept(texts[0].name, layer_of(session.sae, session.hook_point))
    sel, _ = parse_arm(recipe.arm)
    concept, ev = concept_evidence(session, words, judge=judge, chat=gen.chat, methods=needed_selections(sel),
                                   texts=texts)  # fmt: skip
    if sel != "diffmean" and sel not in ev.selections:
        raise SteeringError(f"{recipe.arm}: no features found for {words!r}: {ev.errors.get(sel)}")
    arm = make_arm(recipe.arm, ev.selections.get(sel), ev.diffmean)
    abs_s = arm_strengths(arm, parse_strength(recipe.strength), session.sae, session.calibration,
                          session.sae_folder)  # fmt: skip
    edit = arm_edit(arm, session.sae, torch.tensor([abs_s], device=session.sae.device))
    lm = session.lm
    pair = generate_pair(
        lm.model, lm.tokenizer, prompt, lambda: steering(lm.model, session.hook_point, edit), gen
    )
    tries, scores = [], None
    if escalate or (escalate is None and judge is not None):
        from saekit.steer.concept.judges import MiniLMJudge
        from saekit.steer.concept.ladder import escalate as run_ladder

        fallback = None
        if sel != "diffmean":
            dm = make_arm("diffmean", None, ev.diffmean)
            dm_s = arm_strengths(dm, parse_strength(recipe.strength), session.sae, session.calibration,
                                 session.sae_folder)  # fmt: skip
            fallback = (dm, dm_s)
        pair, arm, abs_s, tries, scores = run_ladder(session, concept, prompt, gen, arm, list(abs_s), pair,
                                                     judge or MiniLMJudge(), fallback=fallback)  # fmt: skip
    return ConceptSteer(concept, recipe, arm, abs_s, ev, pair, tries, scores)


def explain_concept(session, words: str, *, judge=None, chat: bool | None = None, top_n: int = 10) -> str:
    """A table of candidate features for `words`: input contrast, output score, outlier flag, the
    tokens their decoder direction promotes, and what each selection method chose."""
    from saekit.steer.concept.explain import logit_effect_tokens

    concept, ev = concept_evidence(session, words, judge=judge, chat=chat)
    inp = ev.selections.get("input")
    out = ev.selections.get("output")
    cands = list(inp.scores)[:top_n] if inp else []
    toks = (
        logit_effect_tokens(
            session.lm.model, session.lm.tokenizer, session.sae.decoder_directions()[cands], 6
        )
        if cands
        else []
    )
    lines = [f"concept {concept.name!r} ({concept.description}) at {session.hook_point}; "
             f"{int(ev.flagged.sum())} outlier/dense features excluded",
             f"{'feature':>8} {'input':>8} {'output':>8}  promoted tokens"]  # fmt: skip
    for j, t in zip(cands, toks):
        o = out.scores.get(j) if out else None
        o_s = f"{o:>8.3f}" if o is not None else f"{'-':>8}"
        lines.append(f"{j:>8} {inp.scores[j]:>8.3f} {o_s}  " + " ".join(repr(x) for x in t))
    for name, s in ev.selections.items():
        lines.append(f"{name:>10}: features {list(s.features)}")
    for name, err in ev.errors.items():
        lines.append(f"{name:>10}: none ({err})")
    return "\n".join(lines)
