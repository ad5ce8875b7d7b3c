"""The SAE-independent eval baseline: reusing it gives the numbers of a full recomputation, runs only the
original and spliced variants, and a stale or broken cache is detected and recomputed."""

from __future__ import annotations

import copy

import pytest
import torch

from saekit.eval.baseline_cache import baseline_key, baseline_path, load_baseline, save_baseline
from saekit.eval.spliced import eval_positions, spliced_metrics, spliced_metrics_and_baseline
from saekit.hooks import HookPoint

FIELDS = ("ce_orig", "ce_sae", "ce_zero", "ce_mean", "kl", "ce_recovered", "ce_recovered_mean")


def _ids(n=5, t=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 64, (n, t), generator=g)
    ids[:, 0] = 0
    mask = torch.ones(n, t, dtype=torch.bool)
    mask[-1, 11:] = False
    ids[-1, 11:] = 1
    return ids, mask, eval_positions(ids, mask, {0, 1})


def _recon_a(x):
    return 0.7 * x + 0.3 * torch.tanh(x.flip(-1))


def _recon_b(x):
    return 0.5 * x - 0.2 * x.roll(3, -1)


def _assert_same(got, ref):
    for name in FIELDS:
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-5, abs=1e-6), name
    assert got.n_tokens == ref.n_tokens


class _LayerInputs:
    """Records the batch size of every call of the given modules (which layers ran, on how many rows)."""

    def __init__(self, modules):
        self.rows: dict[int, list[int]] = {i: [] for i in range(len(modules))}
        self.handles = [
            m.register_forward_pre_hook(
                lambda mod, args, kw, i=i: self.rows[i].append(_rows(args, kw)), with_kwargs=True
            )
            for i, m in enumerate(modules)
        ]

    def close(self):
        for h in self.handles:
            h.remove()


def _rows(args, kwargs) -> int:
    x = args[0] if args else kwargs["hidden_states"]
    return int(x.shape[0])


def test_reused_baseline_gives_the_full_pass_numbers_for_another_sae(tiny_lm):
    ids, mask, pos = _ids()
    hp = HookPoint.parse("model.layers.0")
    _, base = spliced_metrics_and_baseline(tiny_lm.model, hp, _recon_a, ids, mask, pos, batch_size=2)
    got, _ = spliced_metrics_and_baseline(
        tiny_lm.model, hp, _recon_b, ids, mask, pos, batch_size=2, baseline=base
    )
    ref = spliced_metrics(tiny_lm.model, hp, _recon_b, ids, mask, pos, batch_size=2, share_prefix=False)
    assert got.baseline_reused and not ref.baseline_reused
    _assert_same(got, ref)
    assert got.kl > 1e-4 and got.ce_zero != pytest.approx(got.ce_sae)  # the numbers say something


def test_reuse_skips_the_prefix_and_the_ablation_variants(tiny_lm):
    """With a baseline, layer 0 (the hooked one) runs once, on one context (the freshness check), and
    layer 1 sees two variants per context instead of four."""
    ids, mask, pos = _ids()
    hp = HookPoint.parse("model.layers.0")
    layers = tiny_lm.model.model.layers
    _, base = spliced_metrics_and_baseline(tiny_lm.model, hp, _recon_a, ids, mask, pos, batch_size=2)
    rec = _LayerInputs(layers)
    try:
        spliced_metrics_and_baseline(tiny_lm.model, hp, _recon_b, ids, mask, pos, batch_size=2, baseline=base)
    finally:
        rec.close()
    # batches of 2, 2, 1 contexts; reuse checks one context's prefix; the first eval's full-forward guard
    # (one SAE-spliced context through both layers) is not repeated: the original CE checks the replay
    assert rec.rows[0] == [1]
    assert rec.rows[1] == [4, 4, 2]
    fresh = _LayerInputs(layers)
    try:
        spliced_metrics_and_baseline(tiny_lm.model, hp, _recon_b, ids, mask, pos, batch_size=2)
    finally:
        fresh.close()
    assert fresh.rows[0] == [2, 2, 1, 1]
    assert fresh.rows[1] == [8, 1, 8, 4]


@pytest.mark.parametrize("where", ["before_hook", "after_hook"])
def test_a_baseline_from_other_weights_is_detected_and_recomputed(tiny_lm, where):
    ids, mask, pos = _ids()
    hp = HookPoint.parse("model.layers.0")
    _, base = spliced_metrics_and_baseline(tiny_lm.model, hp, _recon_a, ids, mask, pos, batch_size=2)
    edited = copy.deepcopy(tiny_lm.model)
    with torch.no_grad():
        if where == "before_hook":
            edited.model.embed_tokens.weight.mul_(1.5)
        else:
            edited.model.layers[1].mlp.down_proj.weight.mul_(-2.0)
    with pytest.warns(UserWarning, match="cached baseline"):
        got, _ = spliced_metrics_and_baseline(
            edited, hp, _recon_b, ids, mask, pos, batch_size=2, baseline=base
        )
    ref = spliced_metrics(edited, hp, _recon_b, ids, mask, pos, batch_size=2, share_prefix=False)
    assert not got.baseline_reused
    _assert_same(got, ref)


def test_disk_round_trip_and_unreadable_files(tmp_path, tiny_lm):
    ids, mask, pos = _ids()
    hp = HookPoint.parse("model.layers.1")
    _, base = spliced_metrics_and_baseline(tiny_lm.model, hp, _recon_a, ids, mask, pos, batch_size=2)
    path = tmp_path / "b.safetensors"
    assert save_baseline(path, base)
    import os

    os.utime(path, (1000, 1000))
    back = load_baseline(path)
    assert path.stat().st_mtime > 1000  # a read marks it recently used (evicted last)
    assert back is not None and back.count == base.count
    assert (back.ce_orig_sum, back.ce_zero_sum, back.ce_mean_sum) == (
        base.ce_orig_sum,
        base.ce_zero_sum,
        base.ce_mean_sum,
    )
    assert all(torch.equal(a, b) for a, b in zip(back.prefix, base.prefix, strict=True))
    assert not save_baseline(tmp_path / "big.safetensors", base, max_bytes=16)
    assert not (tmp_path / "big.safetensors").exists()
    # truncated
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable baseline cache"):
        assert load_baseline(tmp_path / "cut.safetensors") is None
    # a valid safetensors file that is not a baseline
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "other"})
    with pytest.warns(UserWarning, match="unreadable baseline cache"):
        assert load_baseline(tmp_path / "foreign.safetensors") is None
    assert load_baseline(tmp_path / "missing.safetensors") is None


def test_the_key_follows_weights_hook_tokens_and_batch_size(tiny_lm):
    ids, mask, pos = _ids()
    m = tiny_lm.model
    key = baseline_key(m, "model.layers.0", ids, mask, pos, 2)
    assert key == baseline_key(copy.deepcopy(m), "model.layers.0", ids, mask, pos, 2)
    edited = copy.deepcopy(m)
    with torch.no_grad():
        edited.model.layers[1].mlp.up_proj.weight.add_(1e-3)
    other_ids = ids.clone()
    other_ids[0, 5] = (other_ids[0, 5] + 1) % 64
    others = {
        baseline_key(edited, "model.layers.0", ids, mask, pos, 2),
        baseline_key(m, "model.layers.1", ids, mask, pos, 2),
        baseline_key(m, "model.layers.0", other_ids, mask, pos, 2),
        baseline_key(m, "model.layers.0", ids, mask, pos & ~torch.eye(5, 16, dtype=torch.bool), 2),
        baseline_key(m, "model.layers.0", ids, mask, pos, 4),
    }
    assert key not in others and len(others) == 5


def test_evaluate_reuses_the_cache_across_saes(tmp_path, monkeypatch, tiny_lm, corpus_file):
    from saekit.eval import EvalConfig, evaluate
    from saekit.sae import SAEConfig, build
    from saekit.sae.config import Provenance

    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path / "cache"))
    reports = {}
    for name, seed in (("a", 0), ("b", 1)):
        prov = Provenance(model="tiny-llama", hook_point="model.layers.0")
        sae = build(SAEConfig(d_in=32, d_sae=64, arch="topk", k=4, provenance=prov), seed=seed)
        sae.save(tmp_path / name)
        for cache in (True, False):
            cfg = EvalConfig(
                sae=str(tmp_path / name), corpus=str(corpus_file), tokens=120, context_len=16, batch_size=2,
                baseline_cache=cache, out=str(tmp_path / f"{name}-{cache}"), quiet=True,
            )  # fmt: skip
            reports[name, cache] = evaluate(cfg, loaded=tiny_lm)["spliced"]
    assert list((tmp_path / "cache" / "eval_baselines").glob("*.safetensors"))
    assert not reports["a", True]["baseline_reused"]  # the first eval wrote it
    assert reports["b", True]["baseline_reused"]  # the second SAE read it
    assert not reports["b", False]["baseline_reused"]
    for name in ("a", "b"):
        for f in FIELDS:
            assert reports[name, True][f] == pytest.approx(reports[name, False][f], rel=1e-5, abs=1e-6), (
                name,
                f,
            )
    assert reports["a", True]["ce_sae"] != pytest.approx(reports["b", True]["ce_sae"], rel=1e-3)
    # a corrupt cache file: the eval warns, recomputes, and rewrites it
    (path,) = (tmp_path / "cache" / "eval_baselines").glob("*.safetensors")
    path.write_bytes(b"\x00" * 40)
    cfg = EvalConfig(
        sae=str(tmp_path / "b"), corpus=str(corpus_file), tokens=120, context_len=16, batch_size=2,
        out=str(tmp_path / "again"), quiet=True,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="unreadable baseline cache"):
        again = evaluate(cfg, loaded=tiny_lm)["spliced"]
    assert not again["baseline_reused"]
    assert again["ce_zero"] == pytest.approx(reports["b", False]["ce_zero"], rel=1e-5)
    assert load_baseline(path) is not None
    assert baseline_path("x", tmp_path).parent.name == "eval_baselines"


def test_eviction_keeps_the_folder_under_its_cap_and_the_recently_used(tmp_path):
    import os

    from saekit.eval.baseline_cache import evict_oldest

    files = []
    for i in range(5):
        f = tmp_path / f"{i}.safetensors"
        f.write_bytes(b"x" * 100)
        os.utime(f, (1000 + i, 1000 + i))
        files.append(f)
    os.utime(files[0], (2000, 2000))  # read recently: kept
    removed = evict_oldest(tmp_path, 300, keep=files[1])
    assert sorted(p.name for p in removed) == ["2.safetensors", "3.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.safetensors", "1.safetensors", "4.safetensors"]
    assert evict_oldest(tmp_path, 300) == []
