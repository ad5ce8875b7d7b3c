"""Metrics against hand values; DiffMean/feature choice on planted data; the sweep end to end on a tiny LM."""

import json
import math

import pytest
import torch

from saekit.steer.concept import judges as MT
from saekit.steer.concept.diffmean import diffmean_direction, pick_feature

from .conftest import make_sae, planted_sae


def test_metric_formulas():
    assert MT.harmonic_mean(1.0, 1.0, 1.0) == 1.0
    assert MT.harmonic_mean(0.5, 1.0, 1.0) == pytest.approx(3 / (2 + 1 + 1))
    assert MT.harmonic_mean(0.0, 1.0, 1.0) == 0.0
    assert MT.distinct_bigrams([1, 2, 1, 2, 1, 2]) == pytest.approx(2 / 5)
    assert MT.concept_score(0.3, off=0.1, on=0.5) == pytest.approx(0.5)
    assert MT.concept_score(0.05, off=0.1, on=0.5) == 0.0
    assert MT.fluency_score(nll=2.0, nll_ref=2.0, distinct2=1.0, distinct2_ref=1.0) == 1.0
    assert MT.fluency_score(nll=3.0, nll_ref=2.0, distinct2=0.5, distinct2_ref=1.0) == pytest.approx(
        math.exp(-1) * 0.5
    )


def test_score_continuations_nll_and_reread(tiny_lm):
    sae = planted_sae(tiny_lm, 17)
    conts = [torch.tensor([5, 6, 7, 8]), torch.tensor([17, 17, 17])]
    scores = MT.score_continuations(tiny_lm, conts, sae=sae, hook_point="model.layers.1", feature=3)
    for c, s in zip(conts, scores):
        logp = torch.log_softmax(tiny_lm(input_ids=c[None]).logits[0, :-1].float(), -1)
        nll = -logp.gather(-1, c[1:, None]).mean()
        assert s.nll == pytest.approx(float(nll.detach()), rel=1e-4)
    assert scores[1].reread > scores[0].reread
    assert scores[1].distinct2 == 0.5 and scores[0].distinct2 == 1.0


def test_diffmean_and_pick_feature():
    sae = make_sae("relu", d_in=6, d_sae=10, seed=4)
    g = torch.Generator().manual_seed(0)
    neg = torch.randn(40, 6, generator=g)
    pos = torch.randn(40, 6, generator=g) + 3.0 * sae.W_enc[:, 6].detach() / sae.W_enc[:, 6].detach().norm()
    dm = diffmean_direction(pos, neg)
    assert torch.allclose(dm, pos.mean(0) - neg.mean(0))
    choice = pick_feature(sae, pos, neg)
    f_pos, f_neg = sae.encode(pos).mean(0), sae.encode(neg).mean(0)
    assert choice.feature == int((f_pos - f_neg).argmax())
    assert pick_feature(sae, pos, neg, exclude=[choice.feature]).feature != choice.feature


class FakeJudge:
    """Bag-of-words embedding: cosine of word-count vectors (stands in for MiniLM offline)."""

    def embed(self, texts):
        return self._vec(list(texts))

    def _vec(self, texts):
        v = torch.zeros(len(texts), 256)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").replace(",", " ").split():
                v[i, hash(w) % 256] += 1
        return torch.nn.functional.normalize(v + 1e-6, dim=-1)

    def cosine(self, a, b):
        ea, eb = self._vec(list(a)), self._vec(list(b))
        return (ea * eb).sum(-1)


def test_sweep_protocol_end_to_end_tiny(tmp_path, tiny_lm, tiny_tokenizer):
    """The whole protocol on a tiny LM with a planted output feature: every arm runs, strengths are
    chosen on train prompts and only test records are reported, and the planted feature is what the
    input and output selections pick."""
    from saekit.models import LoadedModel
    from saekit.steer.calibration import measure, save_calibration
    from saekit.steer.concept.recipes import choose_on_train
    from saekit.sweep.config import SMALL_ARMS, SweepConfig
    from saekit.sweep.report import format_table, save_result
    from saekit.sweep.run import run_sweep

    hp = "model.layers.1"
    sae = planted_sae(tiny_lm, 17, hook_point=hp)
    folder = tmp_path / "sae"
    sae.save(folder)
    save_calibration(folder, measure(sae, [torch.randn(64, 32) * 0.5]))
    concepts = [
        {"name": "seventeen", "description": "w17 w17", "texts": ["w17 w3 w17 w17 w5", "w17 w17 w9 w17"]},
        {"name": "low", "description": "w1 w2", "texts": ["w1 w2 w3 w1 w2", "w2 w1 w4 w2"]},
    ]
    (tmp_path / "c.json").write_text(json.dumps(concepts))
    (tmp_path / "p.json").write_text(json.dumps({"train": ["w1 w2 w3", "w4 w5"], "test": ["w6 w7 w8"]}))
    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    arms = SMALL_ARMS
    cfg = SweepConfig(
        sae=(str(folder),),
        out=str(tmp_path / "out"),
        concepts=str(tmp_path / "c.json"),
        prompts=str(tmp_path / "p.json"),
        n_concepts=2,
        arms=arms,
        strengths="0.5norm,4norm",
        max_new_tokens=5,
        chat=False,
        quiet=True,
    )
    res = run_sweep(cfg, lm=lm, judge=FakeJudge())
    paths = save_result(res, cfg.out)
    info = {c["concept"]: c for c in res.concepts}
    # the planted feature 3 (reads w17's embedding, writes its unembedding) is found by contrast
    assert info["seventeen"]["arms"]["input:clamp"]["features"] == [3]
    arms_run = {r["arm"] for r in res.records}
    assert {"unsteered", "prompting", "diffmean", "input:additive", "input:clamp"} <= arms_run
    # 2 concepts x 3 prompts x (2 baselines + arms that found features x 2 strengths)
    n_arm_rows = sum(len(c["arms"]) for c in res.concepts) * 3 * 2
    assert len(res.records) == 2 * 3 * 2 + n_arm_rows
    # reported rows are test rows at the train-chosen strength: 1 test prompt per (concept, arm)
    chosen = choose_on_train(res.records)
    baselines = {"unsteered", "prompting", "diffmean"}
    for row in res.protocol["per_layer"]:
        # 1 test prompt per concept for which the arm found features (baselines: every concept)
        found = sum(1 for c in res.concepts if row["arm"] in baselines or row["arm"] in c["arms"])
        assert row["n"] == found, row["arm"]
        for (layer, arm, _concept), st in chosen.items():
            if layer == row["layer"] and arm == row["arm"]:
                assert st in row["strengths"]
    # clamping the planted feature hard makes the model write w17
    strong = [r for r in res.records if r["arm"] == "input:clamp" and r["strength"] == "4norm"
              and r["concept"] == "seventeen"]  # fmt: skip
    assert sum(r["text"].count("w17") for r in strong) > sum(
        r["text"].count("w17") for r in res.records if r["arm"] == "unsteered" and r["concept"] == "seventeen"
    )
    assert all(0.0 <= r["overall"] <= 1.0 for r in res.records)
    assert all(r["concept_score"] == 0.0 for r in res.records if r["arm"] == "unsteered")
    doc = json.loads(paths["json"].read_text())
    assert doc["format"] == "saekit.sweep" and len(doc["records"]) == len(res.records)
    assert paths["test_png"].stat().st_size > 5_000
    assert "Test prompts" in format_table(res)
