"""Small checks on the embedded SmolLM2 (float32): logit effects and the synthetic maximiser."""

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def smollm2():
    from saekit.models import load_model

    return load_model("smollm2", dtype="float32", quiet=True)


@pytest.mark.realmodel
def test_logit_effects_equal_norm_then_unembed_of_the_direction(smollm2):
    """For RMSNorm the approximation is exact up to the 1/rms factor: compare with the model's own modules."""
    from saekit.analysis.logits import find_unembed, logit_effects

    model = smollm2.model
    ue = find_unembed(model)
    assert ue.W_U.shape == (model.config.vocab_size, 576) and ue.gamma is not None and not ue.centre
    d = torch.randn(576, generator=torch.Generator().manual_seed(0))
    d = d / d.norm()
    eff = logit_effects(d[None], ue, [0], k=10)[0]
    with torch.no_grad():
        ref = (
            model.lm_head(model.model.norm(d[None, None]))[0, 0]
            * (d.pow(2).mean() + model.model.norm.variance_epsilon).sqrt()
        )
    top = ref.topk(10)
    assert [t for t, _ in eff.promoted] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor([v for _, v in eff.promoted]), top.values, rtol=1e-3, atol=1e-3)
    assert [t for t, _ in eff.suppressed] == (-ref).topk(10).indices.tolist()


@pytest.mark.realmodel
def test_gcg_raises_feature_on_smollm2_with_early_stop(smollm2):
    from saekit.analysis.synthetic import SyntheticConfig, maximise_feature
    from saekit.sae import SAEConfig, build

    sae = build(SAEConfig(d_in=576, d_sae=64, arch="relu"), seed=0).eval()
    calls = []
    last = smollm2.model.model.layers[-1]
    h = last.register_forward_hook(lambda *a: calls.append(1))
    try:
        cfg = SyntheticConfig(
            n_steps=3, seq_len=5, restarts=1, n_candidates=8, top_k_tokens=32, fluency_top=1, init="random"
        )
        res = maximise_feature(
            smollm2.model, sae, "model.layers.1", 5, cfg, tokenizer=smollm2.tokenizer, n_random=4
        )
    finally:
        h.remove()
    best = res.sequences[0]
    assert best.pre_activation > float(torch.tensor(res.random_activations).mean())
    assert 1 < best.perplexity < 1e7
    # the last layer ran only for the fluency cross-entropy: at most fluency_top sequences per step + finals
    assert len(calls) <= cfg.n_steps + 2 + 1
    assert not set(best.token_ids) & set(smollm2.tokenizer.all_special_ids)
