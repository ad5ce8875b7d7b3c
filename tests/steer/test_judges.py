"""The offline judges agree with hand labels (saekit/steer/concept/data/judge_labels.json).

Sixteen continuations, written and labelled by hand: per (concept, prompt) one on-concept fluent, one
off-concept fluent, one on-concept broken and one off-concept broken text. The off-concept fluent one
stands in for the unsteered continuation (the judges' zero). Scored exactly as the sweep scores text
(`saekit.steer.concept.judging`), the judges must rank them as the labels do.
"""

import json

import pytest
import torch

from saekit.steer.concept.concepts import DATA_DIR, Concept


def _labels():
    return json.loads((DATA_DIR / "judge_labels.json").read_text())["items"]


def _auc(pos, neg):
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


@pytest.mark.realmodel
def test_judges_rank_hand_labelled_continuations_like_the_labels():
    from saekit.models import load_model
    from saekit.steer.concept.concepts import load_concepts
    from saekit.steer.concept.judges import MiniLMJudge
    from saekit.steer.concept.judging import build_references, score_batch
    from saekit.steer.generate import Continuation

    lm = load_model("smollm2", dtype="float32")
    judge = MiniLMJudge()
    bundled = {c.name: c for c in load_concepts("protocol")}
    items = _labels()
    assert len(items) >= 12 and {(i["on_concept"], i["fluent"]) for i in items} == {
        (a, b) for a in (True, False) for b in (True, False)
    }

    def cont(text):
        return Continuation(text, torch.tensor(lm.tokenizer(text)["input_ids"]))

    scored = []
    groups = {}
    for it in items:
        groups.setdefault((it["concept"], it["prompt"]), []).append(it)
    for (name, prompt), group in groups.items():
        concept: Concept = bundled[name]
        ref = next(i for i in group if i["fluent"] and not i["on_concept"])
        refs = build_references(lm.model, judge, [cont(ref["text"])], [prompt], [concept])
        out = score_batch(
            lm.model, judge, refs, 0, 0, concept.description, prompt, [cont(i["text"]) for i in group]
        )
        scored += list(zip(group, out))
        best = max(zip(group, out), key=lambda t: t[1]["overall"])[0]
        assert best["on_concept"] and best["fluent"], (
            name,
            [(i["text"][:30], o["overall"]) for i, o in zip(group, out)],
        )

    on = [s["concept_cos"] for i, s in scored if i["on_concept"]]
    off = [s["concept_cos"] for i, s in scored if not i["on_concept"]]
    assert _auc(on, off) >= 0.85
    flu = [s["fluency"] for i, s in scored if i["fluent"]]
    broken = [s["fluency"] for i, s in scored if not i["fluent"]]
    assert _auc(flu, broken) >= 0.9


def test_real_continuation_labels_cover_enough_concepts_and_both_classes():
    """The labels of real steered continuations (`sweep_items`) the judge agreement is measured on."""
    doc = json.loads((DATA_DIR / "judge_labels.json").read_text())
    items = doc["sweep_items"]
    assert len(items) >= 60 and len({i["concept"] for i in items}) >= 10
    assert len({i["id"] for i in items}) == len(items)
    for key in ("on_concept", "fluent"):
        share = sum(bool(i[key]) for i in items) / len(items)
        assert 0.15 <= share <= 0.85, (key, share)  # both classes well represented


@pytest.mark.realmodel
def test_minilm_cosine_separates_labelled_real_continuations():
    """MiniLM's cosine between a real steered continuation and the concept description ranks the
    continuations labelled on-concept above the others (AUC 0.91 when measured; 0.5 is chance)."""
    from saekit.steer.concept.concepts import load_concepts
    from saekit.steer.concept.judges import MiniLMJudge

    items = json.loads((DATA_DIR / "judge_labels.json").read_text())["sweep_items"]
    desc = {c.name: c.description for c in load_concepts("protocol")}
    cos = MiniLMJudge().cosine([i["text"] for i in items], [desc[i["concept"]] for i in items]).tolist()
    on = [c for c, i in zip(cos, items, strict=True) if i["on_concept"]]
    off = [c for c, i in zip(cos, items, strict=True) if not i["on_concept"]]
    assert _auc(on, off) >= 0.85
