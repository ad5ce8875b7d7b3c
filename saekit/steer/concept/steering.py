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

from dataclasses import dataclass, field, replace
from typing import Literal

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


GENERATE_PROMPT = "Write a few sentences about {c}."
"""What the model is asked when it writes its own texts about words no bundled concept matches."""
JUDGE_PROMPT = "Write a short paragraph about {c}."
"""What the model is asked for the verification judge's own texts (`judged_concept`), with `JUDGE_SEED`:
a different question and seed from `GENERATE_PROMPT`'s, so no feature is chosen from the judge's texts."""
JUDGE_SEED = 1
TextSource = Literal["templates", "generated", "both"]


def concept_texts(
    words: str, judge=None, *, lm=None, chat: bool | None = None, source: TextSource = "templates",
    bundled_match: bool = True,
) -> tuple[Concept, list[str]]:  # fmt: skip
    """(the concept, contrast texts): a bundled concept the words match, else texts about the words.

    For unmatched words, `source` says which texts: the `templates` (the words in six fixed frames:
    their DiffMean is partly the frames'), the model's own `generated` answers to `GENERATE_PROMPT`
    (needs `lm`; `model_texts`), or `both`. `bundled_match=False` never uses a bundled concept's texts
    (a bundled concept of the same name is only left out of the contrast): how words the bundle does
    not know are handled, measured on concepts it does know."""
    bundled = load_concepts("protocol")
    key = words.strip().lower()
    if not bundled_match:
        bundled = [c for c in bundled if key not in (c.name, c.description.lower())]
    for c in bundled if bundled_match else ():
        if key in (c.name, c.description.lower()):
            return c, [t for o in bundled if o is not c for t in o.texts]
    if judge is not None and bundled_match:
        cos = judge.embed([words]) @ judge.embed([c.description for c in bundled]).T
        i = int(cos.argmax())
        if float(cos[0, i]) >= MATCH_COS:
            return bundled[i], [t for o in bundled if o is not bundled[i] for t in o.texts]
    texts: tuple[str, ...] = ()
    if source in ("templates", "both"):
        texts += tuple(t.format(c=words, C=words[:1].upper() + words[1:]) for t in TEMPLATES)
    if source in ("generated", "both"):
        if lm is None:
            raise SteeringError(f"concept texts source {source!r} needs the model (lm=)")
        texts += model_texts(lm, words, chat=chat)
    return Concept(key.replace(" ", "_"), words, texts), [t for o in bundled for t in o.texts]


def model_texts(lm, words: str, *, n: int = 8, chat: bool | None = None, max_new_tokens: int = 32,
                seed: int = 0, prompt: str = GENERATE_PROMPT) -> tuple[str, ...]:  # fmt: skip
    """`n` sampled answers of the model to `prompt` (one batched generation): texts about the words in
    the model's own language, so the contrast with other concepts' texts is the topic and not a
    template's wording. Empty answers are dropped."""
    from saekit.steer.generate import GenerationConfig, decode_rows, encode_prompt, generate_ids

    gen = GenerationConfig(max_new_tokens=max_new_tokens, greedy=False, seed=seed, chat=chat)
    ids = encode_prompt(lm.tokenizer, prompt.format(c=words), chat).repeat(n, 1)
    eos = getattr(lm.tokenizer, "eos_token_id", None)
    rows = decode_rows(lm.tokenizer, generate_ids(lm.model, ids, gen, eos), eos)
    out = tuple(r.text.strip() for r in rows if r.text.strip())
    if len(out) < 2:
        raise SteeringError(f"the model wrote fewer than 2 texts about {words!r}; use --concept with "
                            "words it can write about, or a concepts file")  # fmt: skip
    return out


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
    judged: Concept | None = None
    """With escalation: the concept the judge scored against (`judged_concept`)."""


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
    source: TextSource = "both",
):
    """Pick features for `words` with `recipe.arm`, steer `prompt` at `recipe.strength`.

    `escalate` (default: when a `judge` is given): while the judges do not see the concept in the
    steered text, go up the ladder of `escalation_stages` (the recipe's arm at 2x, DiffMean
    written in SAE features, DiffMean itself; `saekit.steer.concept.ladder`); every try is kept in the
    result's `tries`, and `arm` is the one kept (check `arm.name`: `diffmean` means no SAE arm was
    seen). `source`: which texts stand for words no bundled concept matches (`concept_texts`); with
    `both` (and no `texts` given) the ladder's SAE stages run again on features from the templates
    alone (`template_stages`) before DiffMean."""
    import torch

    from saekit.steer.apply import steering
    from saekit.steer.concept.arms import arm_edit, arm_strengths, make_arm, parse_arm
    from saekit.steer.generate import generate_pair
    from saekit.steer.session import layer_of
    from saekit.steer.strength import parse_strength

    given = texts is not None
    texts = texts or concept_texts(words, judge, lm=session.lm, chat=gen.chat, source=source)
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
    tries, scores, judged = [], None, None
    if escalate or (escalate is None and judge is not None):
        from saekit.steer.concept.judges import MiniLMJudge
        from saekit.steer.concept.ladder import escalate as run_ladder

        stages = escalation_stages(session, recipe, arm, list(abs_s), ev)
        if source == "both" and not given and not is_bundled(concept):
            stages = stages[:-1] + template_stages(session, words, recipe, judge, gen) + stages[-1:]
        judged = judged_concept(session.lm, concept, gen.chat)  # every try is judged against it
        pair, arm, abs_s, tries, scores = run_ladder(session, judged, prompt, gen, stages, pair,
                                                     judge or MiniLMJudge())  # fmt: skip
    return ConceptSteer(concept, recipe, arm, abs_s, ev, pair, tries, scores, judged)


def judged_concept(lm, concept: Concept, chat: bool | None) -> Concept:
    """The concept as the verification judge sees it: its description, anchored (concept score 1) on the
    model's answers to a different question about it (`JUDGE_PROMPT`), not on the texts its
    features were chosen from: a judge anchored on a method's own training texts measures nothing (an
    independent judge agreed with 16 of 39 verdicts of the one anchored so; docs/results/concept_judge)."""
    texts = model_texts(lm, concept.description, chat=chat, seed=JUDGE_SEED, prompt=JUDGE_PROMPT)
    return Concept(concept.name, concept.description, texts)


ESCALATION_DECOMPOSE_K = (4, 16)
"""Support sizes of the DiffMean decompositions the ladder tries after the recipe's arm, in order (SAE
arms that approach DiffMean's direction in a few named features; chosen on the protocol concepts,
docs/results/steer_carry)."""
DECOMPOSE_FACTORS = (1.0, 2.0)
"""Multiples of the recipe's strength tried for each decomposition."""
DIFFMEAN_FACTORS = (1.0,)
"""Multiples tried for DiffMean, the non-SAE fallback (last)."""


def escalation_stages(
    session, recipe: Recipe, arm, base: list[float], ev, *, recipe_factors=None,
    decompose_k=ESCALATION_DECOMPOSE_K, decompose_factors=DECOMPOSE_FACTORS,
    diffmean_factors=DIFFMEAN_FACTORS,
) -> list:  # fmt: skip
    """The verification ladder: the recipe's arm (1x, 2x), then the DiffMean vector decomposed into
    `decompose_k` SAE decoder directions (`decompose:additive`, each k at `decompose_factors`), then
    DiffMean itself (not an SAE arm: tried last so that a failure of every SAE arm is visible)."""
    from saekit.steer.concept.arms import arm_strengths, make_arm
    from saekit.steer.concept.ladder import FACTORS, Stage
    from saekit.steer.concept.select import decompose_direction
    from saekit.steer.strength import parse_strength

    strength = parse_strength(recipe.strength)

    def base_of(a) -> list[float]:
        return arm_strengths(a, strength, session.sae, session.calibration, session.sae_folder)

    stages = [Stage(arm.name, arm, list(base), tuple(recipe_factors or FACTORS))]
    if arm.name != "diffmean":
        for k in decompose_k:
            try:
                sel = decompose_direction(session.sae, ev.diffmean, k=k, flagged=ev.flagged)
            except SteeringError:
                continue
            if sel.features == arm.features:
                continue
            a = make_arm("decompose:additive", sel)
            stages.append(Stage(f"decompose{k}:additive", a, base_of(a), tuple(decompose_factors)))
        dm = make_arm("diffmean", None, ev.diffmean)
        stages.append(Stage("diffmean", dm, base_of(dm), tuple(diffmean_factors)))
    return stages


def is_bundled(concept: Concept) -> bool:
    """Whether `concept` is one of the bundled protocol concepts (its own hand-written texts)."""
    return any(concept.texts == c.texts for c in load_concepts("protocol"))


def template_stages(session, words: str, recipe: Recipe, judge, gen) -> list:
    """The SAE stages of the ladder again, with features chosen from the template sentences alone
    (labels end in `(templates)`; judged like every try, by `judged_concept`): the second chance after the
    generated-and-template texts' stages. On the protocol concepts neither text source carried every
    concept the other did (docs/results/steer_carry), so the ladder tries both, generated first."""
    from saekit.steer.concept.arms import arm_strengths, make_arm, parse_arm
    from saekit.steer.strength import parse_strength

    texts = concept_texts(words, judge, source="templates")
    sel, _ = parse_arm(recipe.arm)
    concept, ev = concept_evidence(session, words, judge=judge, chat=gen.chat, methods=needed_selections(sel),
                                   texts=texts)  # fmt: skip
    if sel != "diffmean" and sel not in ev.selections:
        return []
    arm = make_arm(recipe.arm, ev.selections.get(sel), ev.diffmean)
    base = arm_strengths(arm, parse_strength(recipe.strength), session.sae, session.calibration,
                         session.sae_folder)  # fmt: skip
    stages = escalation_stages(session, recipe, arm, base, ev)[:-1]
    return [replace(st, label=f"{st.label} (templates)") for st in stages]


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
