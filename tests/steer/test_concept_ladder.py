"""Strength escalation keeps the first try the judges see, else the best one."""

from __future__ import annotations

from saekit.steer.concept.ladder import MIN_CONCEPT, MIN_FLUENCY, Try, pick


def _t(f, concept, fluency, overall):
    return Try(f, [f], {"concept_score": concept, "fluency": fluency, "overall": overall})


def test_first_visible_and_fluent_try_is_kept():
    tries = [_t(1, 0.0, 0.9, 0.0), _t(2, MIN_CONCEPT, MIN_FLUENCY, 0.3), _t(4, 0.9, 0.8, 0.8)]
    assert pick(tries) == 1  # the weakest strength that shows the concept, not the highest score


def test_unreadable_concept_is_not_visible_and_best_overall_wins_otherwise():
    tries = [_t(1, 0.0, 0.9, 0.0), _t(2, 0.1, 0.9, 0.15), _t(4, 0.9, MIN_FLUENCY / 2, 0.1)]
    assert not tries[2].visible()
    assert pick(tries) == 1
    assert pick([_t(1, 0.0, 0.9, 0.0), _t(2, 0.05, 0.2, 0.0)]) == 1  # tie on overall: more concept


def _session(tiny_lm, tiny_tokenizer):
    import torch

    from saekit.models import LoadedModel
    from saekit.steer.calibration import measure
    from saekit.steer.session import SteerSession

    from .conftest import planted_sae

    hp = "model.layers.1"
    sae = planted_sae(tiny_lm, 17, hook_point=hp)
    cal = measure(sae, [torch.randn(64, 32) * 0.5])
    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    return SteerSession(sae, "", cal, lm, hp)


def test_ladder_tries_sae_features_before_diffmean_and_stops_at_the_first_visible_try(
    tiny_lm, tiny_tokenizer, monkeypatch
):
    """The verification ladder: the recipe's arm at 1x, 2x, then DiffMean written in SAE decoder
    directions, then DiffMean last; it stops at the first try its judge sees, and the kept arm is that
    try's (here the first decomposition try, so an SAE arm, not DiffMean)."""
    from saekit.steer.concept import judging
    from saekit.steer.concept.concepts import Concept
    from saekit.steer.concept.recipes import Recipe
    from saekit.steer.concept.steering import steer_concept
    from saekit.steer.generate import GenerationConfig

    visible_at = 3  # the 3rd try: recipe 1x, 2x are unseen, the first decomposition at 1x is seen
    calls = []

    class ScriptedJudge:
        def __init__(self, model, judge, concept, prompt, unsteered):
            self.plain = {"concept_score": 0.0, "fluency": 1.0, "relevance": 1.0, "overall": 0.0}

        def __call__(self, continuation):
            calls.append(continuation.text)
            seen = len(calls) == visible_at
            return {"concept_score": 0.9 if seen else 0.0, "fluency": 0.9, "relevance": 0.9,
                    "overall": 0.5 if seen else 0.0}  # fmt: skip

    monkeypatch.setattr(judging, "PairJudge", ScriptedJudge)
    session = _session(tiny_lm, tiny_tokenizer)
    concept = Concept("seventeen", "w17", ("w17 w3 w17 w17 w5", "w17 w17 w9 w17", "w2 w17 w17"))
    others = ["w1 w2 w3 w1 w2", "w2 w1 w4 w2", "w5 w6 w7 w8"]
    gen = GenerationConfig(max_new_tokens=4, chat=False)
    recipe = Recipe("input:additive", "1norm", "test")
    res = steer_concept(session, "seventeen", "w1 w2 w3", gen, recipe=recipe, texts=(concept, others),
                        escalate=True, judge=object())  # fmt: skip
    arms = [t.scores["arm"] for t in res.tries]
    assert arms[:2] == ["input:additive"] * 2 and [t.factor for t in res.tries[:2]] == [1.0, 2.0]
    assert arms[2].startswith("decompose") and len(res.tries) == visible_at  # stopped there
    assert res.arm.name == "decompose:additive" and res.arm.features  # an SAE arm, features named
    assert res.strengths == res.tries[2].strengths


def test_escalation_stages_end_with_diffmean_and_every_earlier_stage_is_an_sae_arm(tiny_lm, tiny_tokenizer):
    import torch

    from saekit.steer.concept.arms import arm_strengths, is_sae_arm, make_arm
    from saekit.steer.concept.evidence import gather_evidence
    from saekit.steer.concept.recipes import Recipe
    from saekit.steer.concept.steering import escalation_stages
    from saekit.steer.strength import parse_strength

    s = _session(tiny_lm, tiny_tokenizer)
    pos, neg = ["w17 w3 w17 w17", "w17 w17 w9"], ["w1 w2 w3 w1", "w5 w6 w7 w8"]
    ev = gather_evidence(tiny_lm, tiny_tokenizer, s.sae, s.hook_point, pos, neg, [], cal=s.calibration,
                         methods=["input"])  # fmt: skip
    recipe = Recipe("input:additive", "0.5norm", "test")
    arm = make_arm(recipe.arm, ev.selections["input"])
    base = arm_strengths(arm, parse_strength("0.5norm"), s.sae, s.calibration)
    stages = escalation_stages(s, recipe, arm, base, ev, decompose_k=(1, 4))
    assert stages[0].arm is arm and stages[-1].label == "diffmean"
    assert all(is_sae_arm(st.arm.name) for st in stages[:-1]) and not is_sae_arm(stages[-1].arm.name)
    # DiffMean at the recipe's strength in activation units: its push has that length
    assert abs(stages[-1].base[0] - 0.5 * float(s.calibration.mean_norm)) < 1e-4 * float(
        s.calibration.mean_norm
    )
    for st in stages[1:-1]:  # each decomposition is a unit direction inside the span of its features
        D = s.sae.decoder_directions().float()[list(st.arm.features)]
        u = st.arm.direction.float()
        coef = torch.linalg.lstsq(D.T, u[:, None]).solution
        assert torch.allclose((coef.T @ D)[0], u, atol=1e-4) and abs(float(u.norm()) - 1) < 1e-5


def test_concept_texts_sources_for_unknown_words(tiny_lm, tiny_tokenizer):
    """Templates contain the words; generated texts are the model's own (deterministic per seed), and
    `both` is the two together; `bundled_match=False` keeps a bundled concept out of its own contrast."""
    from saekit.models import LoadedModel
    from saekit.steer.concept.concepts import load_concepts
    from saekit.steer.concept.steering import TEMPLATES, concept_texts

    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    t, _ = concept_texts("origami", source="templates")
    g, _ = concept_texts("origami", lm=lm, chat=False, source="generated")
    b, _ = concept_texts("origami", lm=lm, chat=False, source="both")
    assert all("origami" in x.lower() for x in t.texts) and len(t.texts) == len(TEMPLATES)
    assert b.texts == t.texts + g.texts and len(g.texts) >= 2
    war = next(c for c in load_concepts("protocol") if c.name == "war")
    c, others = concept_texts("war", source="templates", bundled_match=False)
    assert c.texts != war.texts and not set(war.texts) & set(others)
    assert len(others) == sum(len(x.texts) for x in load_concepts("protocol") if x.name != "war")


def test_the_ladder_judges_against_texts_no_feature_was_chosen_from(tiny_lm, tiny_tokenizer, monkeypatch):
    """Every try is judged against the model's answers to JUDGE_PROMPT (its own seed), not against the
    texts the features were chosen from: a judge anchored on a method's training texts measures nothing."""
    from saekit.models import LoadedModel
    from saekit.steer.concept import judging
    from saekit.steer.concept.concepts import Concept
    from saekit.steer.concept.recipes import Recipe
    from saekit.steer.concept.steering import JUDGE_PROMPT, JUDGE_SEED, model_texts, steer_concept
    from saekit.steer.generate import GenerationConfig

    seen = []

    class RecordingJudge:
        def __init__(self, model, judge, concept, prompt, unsteered):
            seen.append(concept)
            self.plain = {"concept_score": 0.0, "fluency": 1.0, "relevance": 1.0, "overall": 0.0}

        def __call__(self, continuation):
            return {"concept_score": 0.0, "fluency": 0.9, "relevance": 0.9, "overall": 0.0}

    monkeypatch.setattr(judging, "PairJudge", RecordingJudge)
    session = _session(tiny_lm, tiny_tokenizer)
    concept = Concept("seventeen", "w17", ("w17 w3 w17 w17 w5", "w17 w17 w9 w17", "w2 w17 w17"))
    gen = GenerationConfig(max_new_tokens=4, chat=False)
    res = steer_concept(session, "seventeen", "w1 w2 w3", gen, recipe=Recipe("input:additive", "1norm", "t"),
                        texts=(concept, ["w1 w2 w3 w1 w2", "w5 w6 w7 w8"]), escalate=True,
                        judge=object())  # fmt: skip
    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    expected = model_texts(lm, "w17", chat=False, seed=JUDGE_SEED, prompt=JUDGE_PROMPT)
    assert len(seen) == 1 and seen[0] is res.judged  # one judge for every try of the ladder
    assert res.judged.texts == expected and res.judged.description == concept.description
    assert not set(res.judged.texts) & set(concept.texts)
    assert len(res.tries) > 3  # nothing was seen, so the whole ladder ran against that one judge
