"""Spliced evaluation on the embedded SmolLM2 (a few hundred tokens): identity splice changes nothing."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.realmodel


def test_identity_splice_on_smollm2_recovers_everything():
    from saekit.data.corpus import load_corpus
    from saekit.eval import eval_positions, spliced_metrics
    from saekit.eval.evaluate import heldout_tokens
    from saekit.eval.spliced import spliced_metrics_and_baseline
    from saekit.hooks import HookPoint
    from saekit.models import load_model

    torch.set_num_threads(2)
    lm = load_model("smollm2", dtype="float32", quiet=True)
    batch = heldout_tokens(load_corpus("shakespeare"), lm.tokenizer, 64, 200)
    ids, mask = batch.token_id[:3], batch.mask[:3]
    pos = eval_positions(ids, mask, set(lm.tokenizer.all_special_ids))
    m = spliced_metrics(
        lm.model, HookPoint.parse("model.layers.15"), lambda x: x.clone(), ids, mask, pos, batch_size=3
    )
    assert m.n_tokens == int(pos.sum()) > 100
    assert m.kl == pytest.approx(0.0, abs=1e-6)
    assert m.ce_recovered == pytest.approx(1.0, abs=1e-5)
    assert m.ce_zero > m.ce_orig + 0.5  # ablating layer 15's output hurts a trained model
    assert 1.0 < m.ce_orig < 8.0
    # the shared-prefix fast path gives the full passes' numbers on the real model
    halve = lambda x: 0.5 * x  # noqa: E731
    args = (lm.model, HookPoint.parse("model.layers.15"), halve, ids[:2], mask[:2], pos[:2])
    fast = spliced_metrics(*args, batch_size=2)
    ref = spliced_metrics(*args, batch_size=2, share_prefix=False)
    assert fast.shared_prefix and not ref.shared_prefix
    for name in ("ce_orig", "ce_sae", "ce_zero", "ce_mean", "kl"):
        assert getattr(fast, name) == pytest.approx(getattr(ref, name), rel=1e-4, abs=1e-5), name
    # a baseline from that eval, reused for another splice, gives that splice's full-pass numbers
    _, base = spliced_metrics_and_baseline(*args, batch_size=2)
    other = lambda x: x.flip(-1)  # noqa: E731
    args_o = (lm.model, HookPoint.parse("model.layers.15"), other, ids[:2], mask[:2], pos[:2])
    reused, _ = spliced_metrics_and_baseline(*args_o, batch_size=2, baseline=base)
    ref_o = spliced_metrics(*args_o, batch_size=2, share_prefix=False)
    assert reused.baseline_reused
    for name in ("ce_orig", "ce_sae", "ce_zero", "ce_mean", "kl"):
        assert getattr(reused, name) == pytest.approx(getattr(ref_o, name), rel=1e-4, abs=1e-5), name
    assert reused.ce_sae > fast.ce_sae  # a permuted residual hurts more than a halved one: not a no-op
