"""Screened TopK encoder: exact values and gradients for the chosen latents, honest miss counting, a margin
that keeps the measured miss rate under its bound, bit-exact resume, and the auto default."""

from __future__ import annotations

import os

import pytest
import torch
from numerics import assert_close_scaled

from saekit.errors import SAEConfigError
from saekit.sae import SAEConfig, build
from saekit.sae import encoder_choice as ec
from saekit.sae.encoder_choice import configure_encoder
from saekit.sae.screened import Screener, count_misses

torch.set_num_threads(1)


def _pair(d_in=64, d_sae=1024, k=8, seed=0):
    """A screened SAE and an exact one with identical weights (training mode)."""
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, arch="topk", k=k)
    a, b = build(cfg, seed=seed), build(cfg, seed=seed)
    with torch.no_grad():  # a trained-looking encoder: not tied, a non-zero bias
        g = torch.Generator().manual_seed(seed + 1)
        w = torch.randn(d_in, d_sae, generator=g) / d_in**0.5
        bias = 0.1 * torch.randn(d_sae, generator=g)
        for m in (a, b):
            m.W_enc.copy_(w)
            m.b_enc.copy_(bias)
    configure_encoder(a, "screened-int8")
    configure_encoder(b, "exact")
    return a.train(), b.train()


def _x(n=256, d=64, seed=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * (1 + torch.rand(n, 1, generator=g) * 3)


def test_count_misses_known_answers():
    exact = torch.tensor(
        [[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, -1.0, -2.0, -3.0, -4.0], [3.0, 3.0, 1.0, 0.0, 0.0]]
    )
    # row 0 chose {0, 2} (value 3 instead of 4): a miss, one latent left out
    # row 1 chose {0, 2}: the left-out latent 1 is negative -> ReLU zero either way, not a miss
    # row 2 chose {0, 1}: the true top 2 (a tie at 3, 3), not a miss
    idx = torch.tensor([[0, 2], [0, 2], [1, 0]])
    vals = exact.gather(1, idx)
    assert count_misses(exact, vals, idx) == (1, 1)


def test_values_are_exact_for_the_chosen_latents_at_any_margin():
    a, _ = _pair()
    a.screen.margin = 0  # the worst screen: whatever it picks must still carry exact values
    x = _x()
    sparse = a(x).sparse
    x_c = a.normalize_input(x) - a.b_dec
    ref = (x_c @ a.W_enc + a.b_enc).gather(1, sparse.indices).relu()
    assert_close_scaled(sparse.values, ref, terms=a.d_in, msg="screened values")


@pytest.mark.parametrize("with_dead", [False, True])
def test_full_margin_matches_the_exact_encoder_and_its_gradients(with_dead):
    a, b = _pair()
    a.screen.margin = a.d_sae  # every latent is a candidate: selection must equal the exact top k
    x = _x()
    dead = torch.zeros(a.d_sae, dtype=torch.bool)
    if with_dead:
        dead[::7] = True
    oa, ob = a(x, dead_mask=dead), b(x, dead_mask=dead)
    assert torch.equal(oa.sparse.indices.sort(-1).values, ob.sparse.indices.sort(-1).values)
    assert_close_scaled(oa.recon, ob.recon, terms=a.d_sae, msg="recon")
    oa.losses.total.backward()
    ob.losses.total.backward()
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        # gradients sum over the batch rows and the latents: a longer reduction, more headroom
        ga, gb = getattr(a, name).grad, getattr(b, name).grad
        assert_close_scaled(ga, gb, terms=x.shape[0] * a.d_sae, msg=name)
    assert a.screen.miss_rate == 0.0


@pytest.mark.parametrize("backend", ["int8", "bfloat16"])
def test_margin_grows_until_the_miss_rate_is_under_the_bound(backend):
    a, b = _pair(d_sae=2048, k=16)
    s = a.screen
    s.backend = backend
    s.margin, s.min_margin, s.check_rows = 0, 1, 64
    x = _x(512)
    with torch.no_grad():
        for _ in range(24):  # 1536 checked rows: more than one decision window (1000 rows at 1%)
            a(x)
    assert s.margin > 0  # a zero margin misses (the low-precision keys are not exact), so it had to grow
    # from there on the controller keeps the long-run share of rows that disagree with the exact encoder
    # under the bound (the margin may still step between neighbours; that is what bounds the rate)
    before = (s.total_rows, s.total_miss)
    with torch.no_grad():
        for _ in range(32):  # 2048 more checked rows: two decision windows
            a(x)
    rate = (s.total_miss - before[1]) / (s.total_rows - before[0])
    assert rate <= s.bound


def test_margin_shrinks_when_misses_are_rare_and_doubles_on_misses():
    s = Screener(margin=64, bound=0.01, min_margin=4)
    for _ in range(s.decide_rows // 32 + 1):
        s.update(32, 0, 0, max_margin=10_000)
    assert s.margin == 48  # one long clean window: 3/4 of the margin
    s.update(32, 2, 2, max_margin=10_000)  # 2 misses in 32 rows: 6% > 1%
    assert s.margin == 96
    s.update(32, 5, 5, max_margin=100)
    s.update(32, 5, 5, max_margin=100)
    assert s.margin == 100  # capped at d_sae - k


def test_state_round_trip():
    s = Screener(margin=8)
    s.update(32, 3, 4, max_margin=1000)
    t = Screener()
    t.load_state_tensor(s.state_tensor())
    assert t.summary() == s.summary() and t.margin == s.margin and t.win_rows == s.win_rows


def _fake_probe(times: dict[str, float], calls: list):
    def probe(d_in, d_sae, k, batch, device, paths):
        calls.append((d_in, d_sae, k, batch, tuple(paths)))
        return {p: times[p] for p in paths if p in times}

    return probe


def test_chooser_takes_a_screen_only_when_clearly_faster():
    assert ec.choose({"exact": 100.0, "screened-bf16": 40.0, "screened-int8": 60.0}) == "screened-bf16"
    assert ec.choose({"exact": 100.0, "screened-bf16": 500.0, "screened-int8": 60.0}) == "screened-int8"
    # a screen 5% faster is a tie (timing noise): exact; a slower one never wins
    assert ec.choose({"exact": 100.0, "screened-bf16": 95.0, "screened-int8": 130.0}) == "exact"
    assert ec.choose({"exact": 100.0, "screened-bf16": 500.0}) == "exact"
    assert ec.choose({"exact": 100.0}) == "exact"
    assert ec.fastest_screen({"exact": 1.0, "screened-bf16": 9.0, "screened-int8": 3.0}) == "screened-int8"
    with pytest.raises(SAEConfigError, match="exact timing"):
        ec.choose({"screened-int8": 1.0})


@pytest.mark.parametrize(
    "times, expected",
    [  # the three CPU kinds of the docs: AMX (bf16 fast), AVX-512 bf16 without AMX, AVX2 (bf16 emulated)
        ({"exact": 300.0, "screened-bf16": 90.0, "screened-int8": 320.0}, "screened-bf16"),
        ({"exact": 300.0, "screened-bf16": 280.0, "screened-int8": 170.0}, "screened-int8"),
        ({"exact": 300.0, "screened-bf16": 1500.0, "screened-int8": 290.0}, "exact"),
    ],
)
def test_auto_never_picks_a_path_slower_than_exact(times, expected):
    big = build(SAEConfig(d_in=256, d_sae=8192, arch="topk", k=32))
    calls: list = []
    choice = ec.resolve("auto", big, 4096, probe=_fake_probe(times, calls), use_cache=False)
    assert choice.path == expected
    assert choice.times_ms[choice.path] <= choice.times_ms["exact"]
    assert calls and calls[0][:4] == (256, 8192, 32, 4096)  # timed at the run's own shapes
    assert expected in choice.describe() and "ms" in choice.describe()
    # `screened` takes the fastest screen even where exact would win; explicit paths are not timed
    assert ec.resolve("screened", big, 4096, probe=_fake_probe(times, calls), use_cache=False).path == min(
        (p for p in times if p != "exact"), key=times.__getitem__
    )
    n = len(calls)
    assert ec.resolve("screened-bf16", big, 4096, probe=_fake_probe(times, calls)).backend == "bfloat16"
    assert len(calls) == n


def test_probe_results_are_cached_per_machine_and_shape(tmp_path, monkeypatch):
    import saekit.probe

    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(saekit.probe, "machine_busy", lambda: False)
    big = build(SAEConfig(d_in=256, d_sae=8192, arch="topk", k=32))
    calls: list = []
    probe = _fake_probe({"exact": 300.0, "screened-bf16": 90.0, "screened-int8": 320.0}, calls)
    first = ec.resolve("auto", big, 4096, probe=probe)
    again = ec.resolve("auto", big, 4096, probe=probe)
    assert (first.cached, again.cached, len(calls)) == (False, True, 1)
    assert again.path == first.path == "screened-bf16" and again.times_ms == first.times_ms
    ec.resolve("auto", big, 1024, probe=probe)  # another batch: probed again
    other = "AVX512_CORE" if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", other)  # another dispatch limit: another machine
    ec.resolve("auto", big, 4096, probe=probe)
    assert len(calls) == 3
    (tmp_path / "probes" / "encoder.json").write_text("{not json")  # a broken cache is re-measured
    assert ec.resolve("auto", big, 4096, probe=probe).path == "screened-bf16" and len(calls) == 4


def test_auto_small_or_non_topk_is_exact_without_timing_and_refusals():
    calls: list = []
    probe = _fake_probe({"exact": 1.0, "screened-int8": 0.1}, calls)
    tiny = build(SAEConfig(d_in=16, d_sae=64, arch="topk", k=4))
    assert ec.resolve("auto", tiny, 1024, probe=probe).path == "exact"  # too small for screening to pay
    btk = build(SAEConfig(d_in=16, d_sae=64, arch="batchtopk", k=4))
    assert ec.resolve("auto", btk, 1024, probe=probe).path == "exact"
    assert calls == []
    with pytest.raises(SAEConfigError, match="topk SAEs"):
        ec.resolve("screened", btk, 1024)
    with pytest.raises(SAEConfigError, match="choose one of"):
        ec.resolve("fast", tiny, 1024)


def test_real_probe_times_every_candidate():
    """The real timing function runs each path at a small shape and returns positive milliseconds."""
    paths = ec.candidate_paths(torch.device("cpu"))
    times = ec.time_selection(64, 1024, 8, 128, torch.device("cpu"), paths)
    assert set(times) == set(paths) and all(t > 0 for t in times.values())


def test_bf16_keys_rank_like_the_exact_pre_activations():
    a, b = _pair()
    a.screen.backend = "bfloat16"
    x_c = a.normalize_input(_x()) - a.b_dec
    W_FD = a.W_enc.T.contiguous()
    with torch.no_grad():
        keys = a.screen.screen_keys(x_c, W_FD, a.b_enc)
        exact = x_c @ a.W_enc + a.b_enc
    assert keys.dtype == torch.bfloat16
    # bf16 keeps 8 mantissa bits: each key within ~2^-8 of the row's largest magnitude of the exact value
    err = (keys.float() - exact).abs().amax(1) / exact.abs().amax(1)
    assert float(err.max()) < 2**-7


def test_latent_major_layout_keeps_values_and_saves(tmp_path):
    a, b = _pair()
    assert a.W_enc.T.is_contiguous() and torch.equal(a.W_enc, b.W_enc)
    a.save(tmp_path / "s")
    loaded = build(a.cfg).load(tmp_path / "s")
    assert torch.equal(loaded.W_enc, a.W_enc)


def test_screened_training_matches_exact_fvu_and_resumes_bit_exactly(tmp_path):
    from saekit.train import TensorSource, TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    basis = torch.randn(256, 64, generator=g)
    codes = torch.rand(4096, 256, generator=g).pow(8)
    src = TensorSource(codes @ basis + 0.05 * torch.randn(4096, 64, generator=g))
    base = dict(arch="topk", k=8, d_sae=1024, batch_size=256, total_tokens=256 * 24, quiet=True, seed=1)
    base.update(checkpoint_every=5, init_sample=1024, lr=3e-3, dead_tokens=512)
    fvu, screen = {}, None
    for enc in ("exact", "screened"):
        res = Trainer(TrainConfig.flat(encoder=enc, **base), src, out=tmp_path / enc).run()
        fvu[enc] = res.metrics["fvu"]
        screen = res.sae.encoder_choice.path
    assert abs(fvu["screened"] - fvu["exact"]) <= 0.01 * fvu["exact"]
    # "screened" picks the faster screen by timing it, and on a busy machine two runs may time it
    # differently: the interrupted, resumed and reference runs are all forced onto the one it picked
    assert screen.startswith("screened-")
    cfg = TrainConfig.flat(encoder=screen, **base)
    part = Trainer(cfg, src, out=tmp_path / "part").run(stop_after_steps=13)  # checkpoint at step 10
    assert not part.finished
    resumed = Trainer(cfg, src, out=tmp_path / "part").run()
    ref = Trainer(cfg, src, out=tmp_path / "ref").run()
    for name, p in ref.sae.state_dict().items():
        assert torch.equal(p, resumed.sae.state_dict()[name]), name
    assert resumed.sae.screen.summary() == ref.sae.screen.summary()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_screen_with_full_margin_matches_exact():
    a, b = _pair()
    a, b = a.cuda(), b.cuda()
    configure_encoder(a, "screened-int8")
    a.screen.margin = a.d_sae
    x = _x().cuda()
    oa, ob = a(x), b(x)
    assert torch.equal(oa.sparse.indices.sort(-1).values, ob.sparse.indices.sort(-1).values)
