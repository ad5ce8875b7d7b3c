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


def _full_acts(model, sae, seqs: list[list[int]], feature: int = 3) -> torch.Tensor:
    """Independent reference: a plain full forward, layer-0 output at the last token, sae.encode."""
    with torch.no_grad():
        h = model(input_ids=torch.tensor(seqs), output_hidden_states=True).hidden_states[1][:, -1]
        return sae.encode(h)[:, feature]


def _full_act(model, sae, ids: list[int], feature: int = 3) -> float:
    return float(_full_acts(model, sae, [ids], feature)[0])


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_long_real_start_kept_whole_and_improved(arch, tiny_lm):
    """A 24-token real context, 4 edited tokens: the 20-token prefix comes back unchanged, the start's
    activation is the context's own (full forward), the result is >= it, and because a brute force
    over every single swap shows an improving one exists, the search finds an improvement."""
    model, sae = _setup(tiny_lm, arch)
    g = torch.Generator().manual_seed(11)
    pool = torch.randint(1, 64, (64, 24), generator=g)
    acts = _full_acts(model, sae, pool.tolist())
    ctx = pool[int(acts.argmax())].tolist()
    start_act = float(acts.max())
    assert start_act > 0
    swaps = [ctx[:p] + [t] + ctx[p + 1 :] for p in range(20, 24) for t in range(1, 64)]
    best_swap = float(_full_acts(model, sae, swaps).max())
    assert best_swap > start_act + 1e-3  # an improving single swap exists (the known answer)
    cfg = SyntheticConfig(
        n_steps=6, seq_len=4, restarts=1, n_candidates=64, top_k_tokens=64, fluency_weight=0, patience=6
    )
    res = maximise_feature(model, sae, "model.layers.0", 3, cfg, init_contexts=[ctx])
    best = res.sequences[0]
    assert best.start == "real:0" and best.n_edited == 4 and best.token_ids[:20] == ctx[:20]
    assert abs(best.start_activation - start_act) < 1e-4
    assert abs(best.activation - _full_act(model, sae, best.token_ids)) < 1e-4
    assert best.activation >= best.start_activation
    assert best.activation >= start_act + 0.5 * (best_swap - start_act)  # at least half the best 1-swap gain


def test_prefix_cache_equals_concatenation(tiny_lm):
    """Scores after a cached prefix equal a forward over prefix + suffix (and the fallback path)."""
    from saekit.analysis.objective import FeatureObjective

    model, sae = _setup(tiny_lm)
    prefix = torch.randint(1, 64, (30,), generator=torch.Generator().manual_seed(2))
    sufs = torch.randint(1, 64, (5, 6), generator=torch.Generator().manual_seed(3))
    obj = FeatureObjective(model, sae, "model.layers.0", prefix)
    assert obj.prefix.trunc is not None  # a Llama takes past_key_values: the cache is used
    _, act = obj.score_ids(sufs, 3)
    ref = torch.tensor([_full_act(model, sae, prefix.tolist() + s.tolist()) for s in sufs])
    assert torch.allclose(act, ref, atol=1e-5)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prefix[None].expand(5, -1), sufs], 1)).logits[:, 29:-1]
    ce_ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), sufs.reshape(-1), reduction="none")
    assert torch.allclose(obj.cross_entropy(sufs), ce_ref.reshape(5, 6).mean(1), atol=1e-5)
    obj.prefix.disable_cache()
    assert torch.allclose(obj.score_ids(sufs, 3)[1], ref, atol=1e-5)
    assert torch.allclose(obj.cross_entropy(sufs), ce_ref.reshape(5, 6).mean(1), atol=1e-5)


def test_rank_value_orders_by_activation_not_pre_activation():
    """A TopK feature with a higher pre-activation but outside the top k ranks below one that fires."""
    from saekit.analysis.objective import rank_value

    pre = torch.tensor([5.0, 3.0, -1.0, 0.5])
    act = torch.tensor([0.0, 3.0, 0.0, 0.0])  # sequence 0: pre 5 but not in the top k
    assert rank_value(pre, act).argsort(descending=True).tolist() == [1, 0, 3, 2]


def test_best_suffix_start_is_at_least_the_whole_context(tiny_lm):
    """With best_suffix the start is the suffix with the highest activation: >= the whole context's
    (full-forward reference), and equal to the best of the suffixes tried."""
    model, sae = _setup(tiny_lm)
    ctx = torch.randint(1, 64, (40,), generator=torch.Generator().manual_seed(4)).tolist()
    kw = {"n_steps": 1, "seq_len": 4, "restarts": 1, "n_candidates": 4, "fluency_weight": 0}
    cfg = SyntheticConfig(**kw, best_suffix=True)
    res = maximise_feature(model, sae, "model.layers.0", 3, cfg, init_contexts=[ctx])
    tried = [ctx[-n:] for n in (4, 8, 16, 32, 40)]
    want = max(_full_act(model, sae, t) for t in tried)
    assert res.sequences[0].start == "real:0:suffix"
    assert abs(res.sequences[0].start_activation - want) < 1e-4
    assert res.sequences[0].start_activation >= _full_act(model, sae, ctx) - 1e-5



def test_maximise_feature_gives_the_model_back_as_it_was(tiny_lm):
    """The model is frozen only while the input is optimised: the caller's requires_grad flags come back
    (before, every parameter was left frozen)."""
    model, sae = _setup(tiny_lm, "topk")
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    params[0].requires_grad_(not before[0])  # a mixed state, whatever the session left
    flags = [p.requires_grad for p in params]
    assert any(flags)
    cfg = SyntheticConfig(n_steps=2, seq_len=3, restarts=1, n_candidates=4, init="random")
    maximise_feature(model, sae, "model.layers.0", 3, cfg, n_random=2)
    assert [p.requires_grad for p in params] == flags
    params[0].requires_grad_(before[0])


def test_bf16_search_reports_fp32_scores_and_still_improves(tiny_lm):
    """A search run by a bf16 copy of the model (`search_model`): the start and the result are scored by the
    float32 model (the reported activations equal a plain fp32 forward of the returned tokens), the result
    never ends below its start, and it improves on a start with a known improving swap."""
    import copy

    model, sae = _setup(tiny_lm, "relu")
    fast = copy.deepcopy(model).to(torch.bfloat16)
    g = torch.Generator().manual_seed(11)
    pool = torch.randint(1, 64, (64, 24), generator=g)
    acts = _full_acts(model, sae, pool.tolist())
    ctx = pool[int(acts.argmax())].tolist()
    swaps = [ctx[:p] + [t] + ctx[p + 1 :] for p in range(20, 24) for t in range(1, 64)]
    assert float(_full_acts(model, sae, swaps).max()) > float(acts.max()) + 1e-3
    cfg = SyntheticConfig(
        n_steps=6, seq_len=4, restarts=1, n_candidates=64, top_k_tokens=64, fluency_weight=0, patience=6
    )
    flags = [p.requires_grad for p in fast.parameters()]
    best = maximise_feature(model, sae, "model.layers.0", 3, cfg, init_contexts=[ctx], search_model=fast)
    best = best.sequences[0]
    assert abs(best.start_activation - float(acts.max())) < 1e-4  # fp32, not bf16 (~1e-2 off)
    assert abs(best.activation - _full_act(model, sae, best.token_ids)) < 1e-4
    assert best.activation > best.start_activation
    assert [p.requires_grad for p in fast.parameters()] == flags  # the search copy is given back too


def test_search_model_reuses_a_held_copy_in_the_search_dtype(tiny_lm):
    """The demo already holds a bf16 copy: the synthetic search takes it instead of casting another; a
    float32 search needs no second model; without a held copy one is cast."""
    from saekit.analysis.run import _search_model
    from saekit.models import with_dtype

    fast = with_dtype(tiny_lm, "bfloat16")
    assert _search_model(tiny_lm, "bfloat16", "cpu", fast) is fast.model
    assert _search_model(tiny_lm, "float32", "cpu", fast) is None
    made = _search_model(tiny_lm, "bfloat16", "cpu")
    assert made is not tiny_lm.model and next(made.parameters()).dtype == torch.bfloat16
