"""Core metrics: the per-token rows summed give `saekit eval`'s figures; intervals bracket them."""

from __future__ import annotations

import pytest
import torch

from saekit.bench.core import CoreConfig, core_inputs, core_metrics, heldout_documents
from saekit.data.corpus import Document
from saekit.eval import activation_metrics, spliced_metrics
from saekit.eval.activations import inlier_metrics
from saekit.sae import SAEConfig, build


def _sae(d=32, f=64, seed=0):
    return build(SAEConfig(d_in=d, d_sae=f, arch="topk", k=4), seed=seed).eval()


@pytest.mark.parametrize("hook", ["model.layers.0", "model.layers.1"])
def test_core_matches_eval_figures(tiny_lm, corpus_file, hook):
    cfg = CoreConfig(corpus=str(corpus_file), tokens=200, context_len=24, batch_size=3)
    inputs = core_inputs(tiny_lm, hook, cfg)
    assert inputs.slot is not None  # a layer of the stack: replayed, and the replay was checked
    sae = _sae()
    m = core_metrics(sae, tiny_lm, hook, inputs, cfg, n_boot=200)
    ids = torch.cat([b[0] for b in inputs.batches])
    mask = torch.cat([b[1] for b in inputs.batches])
    pos = torch.cat([b[2] for b in inputs.batches])
    acts = []

    def reconstruct(x):
        return sae.reconstruct(x.float()).to(x.dtype)

    ref = spliced_metrics(
        tiny_lm.model,
        hook,
        reconstruct,
        ids,
        mask,
        pos,
        batch_size=3,
        on_activations=lambda x: acts.append(x.float()),
    )
    for name in ("ce_orig", "ce_zero", "ce_mean", "kl"):
        assert m[name].value == pytest.approx(getattr(ref, name), rel=1e-5, abs=1e-6), name
    assert m["ce_sae"].value == pytest.approx(ref.ce_sae, rel=1e-5)
    assert m["ce_recovered"].value == pytest.approx(ref.ce_recovered, rel=1e-4, abs=1e-5)
    assert m["ce_recovered_mean"].value == pytest.approx(ref.ce_recovered_mean, rel=1e-4, abs=1e-5)
    rows = torch.cat(acts)
    am = activation_metrics(sae, [rows])
    assert m["fvu"].value == pytest.approx(am.fvu, rel=1e-5)
    assert m["l0"].value == pytest.approx(am.l0, rel=1e-9)
    assert m["never_fired_pct"].value == pytest.approx(am.dead_pct, abs=1e-9)
    inl, _ = inlier_metrics(sae, rows, 50.0)
    assert m["fvu_inliers"].value == pytest.approx(inl.fvu, rel=1e-5)
    for name, iv in m.items():
        assert iv.n == len(ids) or name in ("never_fired_pct", "dense_pct")
        assert iv.lo <= iv.value + 1e-9 and iv.value <= iv.hi + 1e-9 or name == "never_fired_pct", name
    # resampling rows can only find more latents silent: never-fired is reported without an interval
    nf = m["never_fired_pct"]
    assert nf.lo != nf.lo and nf.hi != nf.hi and nf.fmt(1) == f"{nf.value:.1f}"


def test_heldout_documents_interleave_sources_from_the_end():
    docs = [Document(i, f"t{i}", f"{'a' if i < 3 else 'b'}:{i}") for i in range(5)]
    order = [d.source for d in heldout_documents(docs)]
    assert order == ["a:2", "b:4", "a:1", "b:3", "a:0"]
