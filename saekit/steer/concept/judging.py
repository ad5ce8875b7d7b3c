"""Score batches of continuations with the offline judges, relative to the unsteered references.

`References` holds, per prompt, what the unsteered continuation scored (perplexity, distinct bigrams,
similarity to the prompt, similarity to each concept) and, per concept, how similar the concept's own
texts are to its description: the 0 and 1 anchors of `saekit.steer.concept.judges`. `score_batch`
then turns continuations into metric dicts. Kept apart from the sweep loop so the hand-label check
(`tests/steer/test_judges.py`) scores text exactly the way the sweep does. `PairJudge` applies the
same scoring to one prompt's steered continuations (`saekit steer --concept`, verified by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from saekit.steer.concept import judges as MT
from saekit.steer.concept.concepts import Concept


@dataclass(frozen=True)
class References:
    """Unsteered anchors for the judges."""

    nll: list[float]
    """Per prompt: NLL of the unsteered continuation."""
    distinct2: list[float]
    """Per prompt: distinct-bigram fraction of the unsteered continuation."""
    prompt_cos: list[float]
    """Per prompt: MiniLM cosine of the unsteered continuation to the prompt."""
    concept_cos: list[list[float]]
    """`[concept][prompt]`: cosine of the unsteered continuation to the concept description."""
    on_anchor: list[float]
    """Per concept: mean cosine of the concept's own texts to its description (concept score 1)."""


def build_references(model, judge, plain, prompts: Sequence[str], concepts) -> References:
    """Anchors from the unsteered continuations `plain` (one per prompt) and the concepts."""
    sc = MT.score_continuations(model, [c.token_ids for c in plain])
    texts = [c.text for c in plain]
    desc = judge.embed([c.description for c in concepts])
    on = [float((judge.embed(list(c.texts)) @ desc[i]).mean()) for i, c in enumerate(concepts)]
    return References(
        nll=[s.nll for s in sc],
        distinct2=[s.distinct2 for s in sc],
        prompt_cos=judge.cosine(texts, list(prompts)).tolist(),
        concept_cos=[judge.cosine(texts, [c.description]).tolist() for c in concepts],
        on_anchor=on,
    )


def score_batch(model, judge, refs: References, ci: int, pi: int, description: str, prompt: str, conts):
    """Metric dicts (concept_score, fluency, relevance, overall + raw values) for continuations of
    prompt `pi`, judged for concept `ci`."""
    sc = MT.score_continuations(model, [c.token_ids for c in conts])
    texts = [c.text for c in conts]
    ccos = judge.cosine(texts, [description]).tolist()
    pcos = judge.cosine(texts, [prompt]).tolist()
    out = []
    for k, c in enumerate(conts):
        concept = MT.concept_score(ccos[k], refs.concept_cos[ci][pi], refs.on_anchor[ci])
        flu = MT.fluency_score(sc[k].nll, refs.nll[pi], sc[k].distinct2, refs.distinct2[pi])
        ref_p = refs.prompt_cos[pi]
        rel = MT.clip01(pcos[k] / ref_p) if ref_p > 0 else 0.0
        out.append(
            {
                "text": c.text,
                "concept_cos": ccos[k],
                "prompt_cos": pcos[k],
                "nll": sc[k].nll,
                "distinct2": sc[k].distinct2,
                "concept_score": concept,
                "fluency": flu,
                "relevance": rel,
                "overall": MT.harmonic_mean(concept, flu, rel),
            }
        )
    return out


class PairJudge:
    """Judge scores (concept, fluency, relevance, overall) of steered continuations of one prompt,
    anchored on its unsteered continuation exactly as in the sweep (so the unsteered concept score is
    0). The references and the unsteered scores are computed once, however many steered texts follow."""

    def __init__(self, model, judge, concept: Concept, prompt: str, unsteered):
        self.args = (model, judge)
        self.concept, self.prompt = concept, prompt
        self.refs = build_references(model, judge, [unsteered], [prompt], [concept])
        self.plain = self(unsteered)

    def __call__(self, continuation) -> dict:
        model, judge = self.args
        return score_batch(
            model, judge, self.refs, 0, 0, self.concept.description, self.prompt, [continuation]
        )[0]


def judge_pair(model, judge, concept: Concept, prompt: str, pair) -> tuple[dict, dict]:
    """Judge scores of the unsteered and the steered text of `pair` (see `PairJudge`)."""
    j = PairJudge(model, judge, concept, prompt, pair.unsteered)
    return j.plain, j(pair.steered)


def format_scores(plain: dict, steered: dict) -> str:
    """The unsteered and steered judge scores as a small table for the terminal."""
    keys = ("concept_score", "fluency", "relevance", "overall")
    head = " ".join(f"{k.replace('_score', ''):>10}" for k in keys)
    row = lambda name, d: f"{name:>10} " + " ".join(f"{d[k]:>10.3f}" for k in keys)  # noqa: E731
    return (
        f"judges (offline: MiniLM concept/relevance, unsteered-model perplexity)\n{'':>10} {head}\n"
        + "\n".join([row("unsteered", plain), row("steered", steered)])
    )
