import pytest
import torch

from saekit.analysis.synthetic import SyntheticConfig, maximise_feature
from saekit.errors import SaekitError
from saekit.sae import SAEConfig, build

torch.set_num_threads(2)


def _setup(tiny_lm, arch="relu"):
    """The suite's tiny Llama (d=32) and an SAE whose feature 3 reads a fixed layer-0 direction."""
    model = tiny_lm.model
    d = model.config.hidden_size
    sae = build(SAEConfig(d_in=d, d_sae=8, arch=arch, k=2 if arch == "topk" else None), seed=1).eval()
    with torch.no_grad():  # planted feature 3: reads a fixed direction of the layer-0 residual
        u = torch.randn(d, generator=torch.Generator().manual_seed(5))
        sae.W_enc[:, 3] = u / u.norm() * 3
        sae.b_enc[3] = 0.0
    return model, sae


@pytest.mark.parametrize("method", ["gcg", "soft"])
def test_optimiser_raises_planted_feature_above_random(method, tiny_lm):
    model, sae = _setup(tiny_lm)
    cfg = SyntheticConfig(
        n_steps=12,
        seq_len=5,
        restarts=2,
        method=method,
        n_candidates=32,
        top_k_tokens=16,
        learning_rate=0.3,
        fluency_weight=0.01,
        init="random",
    )
    res = maximise_feature(model, sae, "model.layers.0", 3, cfg, n_random=64)
    rand = torch.tensor(res.random_activations)
    best = res.sequences[0]
    assert best.activation > rand.mean() + 3 * rand.std()
    if method == "gcg":  # the discrete search beats every one of 64 random sequences
        assert best.activation > 1.2 * rand.max()
    assert best.activation >= res.sequences[-1].activation
    assert len(best.token_ids) == 5 and best.ce > 0 and best.perplexity > 1
    # reported activation is the SAE's own encode of the hooked activation
    h = model(input_ids=torch.tensor([best.token_ids]), output_hidden_states=True).hidden_states[1]
    assert abs(sae.encode(h[0, -1])[3].item() - best.activation) < 1e-4


def test_deterministic_with_seed_and_topk_sae(tiny_lm):
    model, sae = _setup(tiny_lm, "topk")
    cfg = SyntheticConfig(n_steps=4, seq_len=4, restarts=1, n_candidates=8, seed=3, init="random")
    a = maximise_feature(model, sae, "model.layers.0", 3, cfg, n_random=4)
    b = maximise_feature(model, sae, "model.layers.0", 3, cfg, n_random=4)
    assert a.sequences[0].token_ids == b.sequences[0].token_ids
    assert a.trajectories == b.trajectories
    # trajectories of pre-activation never go down in gcg (greedy acceptance, CE weight small)
    assert len(a.trajectories[0]) == 4


def test_bad_config_and_feature(tiny_lm):
    with pytest.raises(SaekitError, match="n-steps"):
        SyntheticConfig(n_steps=0)
    model, sae = _setup(tiny_lm)
    with pytest.raises(SaekitError, match="out of range"):
        maximise_feature(model, sae, "model.layers.0", 99, SyntheticConfig())


def test_real_start_never_ends_below_it(tiny_lm):
    """Started from a given real context, gcg only accepts improvements: it ends at or above the
    context's own activation, computed here independently with a full forward + sae.encode."""
    model, sae = _setup(tiny_lm)
    g = torch.Generator().manual_seed(7)
    pool = torch.randint(1, 64, (200, 5), generator=g)
    with torch.no_grad():
        h = model(input_ids=pool, output_hidden_states=True).hidden_states[1][:, -1]
        acts = sae.encode(h)[:, 3]
    best_ctx = pool[int(acts.argmax())].tolist()  # the best of 200 random "real" contexts
    cfg = SyntheticConfig(n_steps=3, seq_len=5, restarts=2, n_candidates=8, top_k_tokens=8, fluency_weight=0)
    res = maximise_feature(model, sae, "model.layers.0", 3, cfg, init_contexts=[best_ctx])
    starts = {s.restart: s for s in res.sequences}
    assert starts[0].start == "real:0" and starts[1].start == "random"
    assert abs(starts[0].start_activation - float(acts.max())) < 1e-4
    assert starts[0].activation >= float(acts.max()) - 1e-5
    assert res.sequences[0].activation >= float(acts.max()) - 1e-5


def test_real_starts_rebuild_the_harvest_window():
    from saekit.analysis.real_starts import real_starts, window_start

    assert window_start(0, 128) == 0 and window_start(130, 128) == 128 and window_start(127, 128, True) == 127
    doc = torch.arange(1000, 1300)
    feat = {"top_examples": [{"doc_id": 0, "position": 140, "context": {"token_ids": [9], "focus": 0}}]}
    got = real_starts(feat, 3, tokens=lambda d, a, b: doc[a:b], context_len=128)
    assert got == [list(range(1128, 1141))]  # window 128..255 of the document, up to position 140
    assert real_starts(feat, 3) == [[9]]  # no token table: the document's own context
