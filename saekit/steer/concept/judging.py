"""Score batches of continuations with the offline judges, relative to the unsteered references.

`References` holds, per prompt, what the unsteered continuation scored (perplexity, distinct bigrams,
similarity to the prompt, similarity to each concept) and, per concept, how similar the concept's own
texts are to its description: the 0 and 1 anchors of `saekit.steer.concept.judges`. `score_batch` then turns
continuations into metric dicts. Kept apart from the sweep loop so the hand-label check
(`tests/steer/test_judges.py`) scores text exactly the way the sweep does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from saekit.steer.concept import judges as MT


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
