"""Evaluation: exact accumulation, spliced CE/KL against known answers, the CLI path on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from saekit.errors import ShapeError
from saekit.eval import activation_metrics, eval_positions, spliced_metrics
from saekit.hooks import HookPoint
from saekit.sae import SAEConfig, build


def _ids(n=3, t=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 64, (n, t), generator=g)
    ids[:, 0] = 0  # BOS
    mask = torch.ones(n, t, dtype=torch.bool)
    mask[-1, 12:] = False
    ids[-1, 12:] = 1
    return ids, mask


def test_eval_positions_exclude_bos_first_and_padding():
    ids, mask = _ids()
    pos = eval_positions(ids, mask, {0, 1}, exclude_first=1)
    assert not pos[:, 0].any() and not pos[:, -1].any()
    assert pos[0, 1:15].all()
    assert pos[2, 1:11].all() and not pos[2, 11:].any()  # token 11's successor is padding
    assert int(pos.sum()) == 14 + 14 + 10


def test_identity_reconstruction_recovers_everything(tiny_lm):
    ids, mask = _ids()
    pos = eval_positions(ids, mask, {0, 1})
    hp = HookPoint.parse("model.layers.0")
    m = spliced_metrics(tiny_lm.model, hp, lambda x: x.clone(), ids, mask, pos, batch_size=2)
    assert m.n_tokens == int(pos.sum())
    assert m.ce_sae == pytest.approx(m.ce_orig, abs=1e-6)
    assert m.kl == pytest.approx(0.0, abs=1e-6)
    assert m.ce_recovered == pytest.approx(1.0, abs=1e-5)
    assert m.ce_zero != pytest.approx(m.ce_orig, abs=1e-3)


def test_zero_reconstruction_recovers_nothing_and_ce_matches_manual(tiny_lm):
    import torch.nn.functional as F

    ids, mask = _ids()
    pos = eval_positions(ids, mask, {0, 1})
    hp = HookPoint.parse("model.layers.1")
    m = spliced_metrics(tiny_lm.model, hp, torch.zeros_like, ids, mask, pos, batch_size=3)
    assert m.ce_recovered == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        logits = tiny_lm.model(input_ids=ids, attention_mask=mask.long()).logits
    sel = pos[:, :-1]
    ce = F.cross_entropy(logits[:, :-1][sel], ids[:, 1:][sel])
    assert m.ce_orig == pytest.approx(float(ce), rel=1e-5)


def test_activation_metrics_exact_and_batch_invariant():
    torch.manual_seed(0)
    sae = build(SAEConfig(d_in=8, d_sae=16, arch="topk", k=3), seed=0)
    x = torch.randn(100, 8) * 3 + 1
    whole = activation_metrics(sae, [x])
    parts = activation_metrics(sae, x.split(7))
    assert parts.fvu == pytest.approx(whole.fvu, rel=1e-9)
    assert parts.shrinkage == pytest.approx(whole.shrinkage, rel=1e-9)
    with torch.no_grad():
        recon = sae.reconstruct(x)
    fvu = float((x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert whole.fvu == pytest.approx(fvu, rel=1e-5)
    assert whole.l0 == pytest.approx(3.0, abs=1e-6)
    with torch.no_grad():  # dead: never non-zero on any row, from the latents themselves
        never = (sae.encode(x) == 0).all(0)
    assert whole.dead_pct == pytest.approx(100 * float(never.float().mean()))
    assert torch.equal(whole.density == 0, never)


def test_inlier_metrics_leave_out_the_attention_sink_row():
    from saekit.eval.activations import inlier_metrics

    sae = build(SAEConfig(d_in=8, d_sae=16, arch="topk", k=3), seed=0)
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    sink = x.clone()
    sink[17] *= 500.0  # one row at ~500x the median norm, like SmolLM2's sinks
    got, left_out = inlier_metrics(sae, sink, 50.0)
    assert left_out == 1
    with torch.no_grad():  # by hand, on the other 199 rows
        rows = torch.cat([x[:17], x[18:]])
        fvu = float((rows - sae.reconstruct(rows)).pow(2).sum() / (rows - rows.mean(0)).pow(2).sum())
    assert got.fvu == pytest.approx(fvu, rel=1e-5)
    assert activation_metrics(sae, [sink]).fvu != pytest.approx(fvu, rel=1e-2)  # the sink really moves it
    assert inlier_metrics(sae, x, 50.0)[1] == 0


def test_activation_metrics_rejects_wrong_width():
    sae = build(SAEConfig(d_in=8, d_sae=16, arch="topk", k=3))
    with pytest.raises(ShapeError, match="width d=12 but the SAE expects d_in=8"):
        activation_metrics(sae, [torch.randn(4, 12)])


def _tiny_store(folder, acts, model="tiny-llama", hook="model.layers.0"):
    from saekit.data import StoreWriter

    n = acts.shape[0]
    w = StoreWriter(
        folder,
        {"model": model, "hook_point": hook, "d": acts.shape[1], "model_dtype": "float32"},
        shard_rows=97,
    )
    meta = {
        "doc_id": torch.zeros(n, dtype=torch.int32),
        "position": torch.arange(n, dtype=torch.int32),
        "token_id": torch.zeros(n, dtype=torch.int32),
    }
    w.add(acts, meta)
    w.close()


def test_train_on_store_then_eval_end_to_end(tmp_path, tiny_lm, corpus_file):
    """Harvest-like store from the tiny LM -> train CLI-equivalent -> evaluate (JSON + PNG)."""
    from saekit.commands.train import main as train_main
    from saekit.eval import EvalConfig, evaluate
    from saekit.hooks import capture

    ids = torch.randint(4, 64, (40, 32), generator=torch.Generator().manual_seed(1))
    hp = "model.layers.0"
    with torch.no_grad(), capture(tiny_lm.model, [hp]) as cap:
        tiny_lm.model(input_ids=ids)
    acts = cap.activations[hp][:, 1:].reshape(-1, 32).float()
    _tiny_store(tmp_path / "acts", acts)
    rc = train_main(
        [
            "--acts",
            str(tmp_path / "acts"),
            "--arch",
            "topk",
            "--k",
            "4",
            "--expansion",
            "2",
            "--batch-size",
            "128",
            "--total-tokens",
            str(128 * 30),
            "--out",
            str(tmp_path / "sae"),
            "--log-every",
            "5",
            "--quiet",
        ]
    )
    assert rc == 0
    log = [json.loads(line) for line in (tmp_path / "sae" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["fvu"] < log[0]["fvu"]
    rep = evaluate(
        EvalConfig(
            sae=str(tmp_path / "sae"),
            corpus=str(corpus_file),
            tokens=200,
            context_len=32,
            acts=str(tmp_path / "acts"),
            quiet=True,
        ),
        loaded=tiny_lm,
    )
    assert rep["model"] == "tiny-llama" and rep["hook_point"] == hp  # from the store's manifest
    assert 0 < rep["heldout_metrics"]["fvu"] < 1
    assert 0 < rep["heldout_metrics_inliers"]["fvu"] < 1
    assert rep["store_metrics"]["l0"] == pytest.approx(4.0, abs=0.5)
    s = rep["spliced"]
    assert s["n_tokens"] >= 100
    # independent reference: the original and SAE-spliced CE of a plain forward over the same contexts
    ref_orig, ref_sae = _manual_ce(tiny_lm, tmp_path / "sae", corpus_file, n_tokens=s["n_tokens"])
    assert s["ce_orig"] == pytest.approx(ref_orig, rel=1e-5)
    assert s["ce_sae"] == pytest.approx(ref_sae, rel=1e-5)
    assert s["kl"] >= 0
    out = tmp_path / "sae" / "eval"
    assert json.loads((out / "eval.json").read_text())["spliced"]["ce_sae"] == s["ce_sae"]
    assert (out / "eval.png").read_bytes()[:4] == b"\x89PNG"


def _manual_ce(lm, sae_dir, corpus_file, n_tokens: int) -> tuple[float, float]:
    """CE of the tiny LM with and without the SAE spliced at every scored position, by hand."""
    import torch.nn.functional as F

    import saekit
    from saekit.data.corpus import load_corpus
    from saekit.eval.evaluate import heldout_tokens
    from saekit.hooks import intervene

    sae = saekit.load(sae_dir).eval()
    batch = heldout_tokens(load_corpus(str(corpus_file)), lm.tokenizer, 32, 200)
    pos = eval_positions(batch.token_id, batch.mask, set(lm.tokenizer.all_special_ids))
    n_ctx = int(torch.searchsorted(pos.sum(1).cumsum(0), torch.tensor(200))) + 1
    ids, mask, pos = batch.token_id[:n_ctx], batch.mask[:n_ctx], pos[:n_ctx]

    def splice(h):
        h = h.clone()
        h[pos] = sae.decode(sae.encode(h[pos]))
        return h

    sel = pos[:, :-1]
    assert int(sel.sum()) == n_tokens
    out = []
    with torch.no_grad():
        for edit in (lambda h: h, splice):
            with intervene(lm.model, "model.layers.0", edit):
                logits = lm.model(input_ids=ids, attention_mask=mask.long()).logits
            out.append(float(F.cross_entropy(logits[:, :-1][sel].float(), ids[:, 1:][sel])))
    return out[0], out[1]


def test_eval_refuses_store_of_other_width(tmp_path, tiny_lm, corpus_file):
    from saekit.eval import EvalConfig, evaluate

    sae = build(
        SAEConfig(
            d_in=32,
            d_sae=64,
            arch="topk",
            k=4,
            provenance=__import__("saekit.sae.config", fromlist=["Provenance"]).Provenance(
                model="tiny-llama", hook_point="model.layers.0"
            ),
        )
    )
    sae.save(tmp_path / "sae")
    _tiny_store(tmp_path / "acts", torch.randn(300, 24))
    with pytest.raises(ShapeError, match="activation store .* width d=24 but the SAE expects d_in=32"):
        evaluate(
            EvalConfig(
                sae=str(tmp_path / "sae"), corpus=str(corpus_file), acts=str(tmp_path / "acts"), quiet=True
            ),
            loaded=tiny_lm,
        )


def _nonlinear_recon(x):
    """A stand-in SAE whose splice really changes the activations (not identity, not zero)."""
    return 0.7 * x + 0.3 * torch.tanh(x.flip(-1))


@pytest.mark.parametrize("hook", ["model.layers.0", "model.layers.1"])
def test_shared_prefix_equals_full_passes(tiny_lm, hook):
    ids, mask = _ids()
    pos = eval_positions(ids, mask, {0, 1})
    args = (tiny_lm.model, HookPoint.parse(hook), _nonlinear_recon, ids, mask, pos)
    fast = spliced_metrics(*args, batch_size=2)
    ref = spliced_metrics(*args, batch_size=2, share_prefix=False)
    assert fast.shared_prefix and not ref.shared_prefix
    for name in ("ce_orig", "ce_sae", "ce_zero", "ce_mean", "kl", "ce_recovered", "ce_recovered_mean"):
        assert getattr(fast, name) == pytest.approx(getattr(ref, name), rel=1e-5, abs=1e-6), name
    assert fast.n_tokens == ref.n_tokens
    assert fast.kl > 1e-4  # the splice is not a no-op, so the comparison means something


def test_non_layer_hook_falls_back_to_full_passes(tiny_lm):
    ids, mask = _ids()
    pos = eval_positions(ids, mask, {0, 1})
    args = (tiny_lm.model, HookPoint.parse("model.layers.0.mlp"), _nonlinear_recon, ids, mask, pos)
    m = spliced_metrics(*args, batch_size=2)
    ref = spliced_metrics(*args, batch_size=2, share_prefix=False)
    assert not m.shared_prefix
    assert m.ce_sae == pytest.approx(ref.ce_sae, rel=1e-6)


def test_every_variant_and_recovered_fraction_match_manual_forwards(tiny_lm):
    """ce_orig / ce_sae / ce_zero / ce_mean = CE of plain forwards whose hooked activation at the
    evaluated positions is kept, reconstructed, zeroed or replaced by its mean over those positions;
    the recovered fractions follow from those hand-computed CEs, and the KL is F.kl_div's."""
    import torch.nn.functional as F

    from saekit.hooks import capture, intervene

    ids, mask = _ids()
    pos = eval_positions(ids, mask, {0, 1})
    hp = HookPoint.parse("model.layers.0")
    m = spliced_metrics(tiny_lm.model, hp, _nonlinear_recon, ids, mask, pos, batch_size=2)
    with torch.no_grad():
        with capture(tiny_lm.model, hp) as cap:
            tiny_lm.model(input_ids=ids, attention_mask=mask.long())
        mean = cap.activations[str(hp)][pos].double().mean(0).float()

        def at_positions(fn):
            def edit(h):
                h = h.clone()
                h[pos] = fn(h[pos])
                return h

            return edit

        sel = pos[:, :-1]
        ce, logp = {}, {}
        for name, fn in [("orig", lambda a: a), ("sae", _nonlinear_recon), ("zero", torch.zeros_like),
                         ("mean", lambda a: mean.expand_as(a))]:  # fmt: skip
            with intervene(tiny_lm.model, hp, at_positions(fn)):
                logits = tiny_lm.model(input_ids=ids, attention_mask=mask.long()).logits
            ce[name] = float(F.cross_entropy(logits[:, :-1][sel].float(), ids[:, 1:][sel]))
            logp[name] = F.log_softmax(logits[:, :-1][sel].double(), -1)
    kl = float(F.kl_div(logp["sae"], logp["orig"], log_target=True, reduction="sum")) / int(sel.sum())
    assert m.kl == pytest.approx(kl, rel=1e-4) and kl > 1e-4
    for name, value in ce.items():
        assert getattr(m, f"ce_{name}") == pytest.approx(value, rel=1e-5), name
    assert abs(ce["zero"] - ce["orig"]) > 1e-3 and abs(ce["mean"] - ce["orig"]) > 1e-4  # well-defined ratios
    assert m.ce_recovered == pytest.approx((ce["zero"] - ce["sae"]) / (ce["zero"] - ce["orig"]), rel=1e-3)
    assert m.ce_recovered_mean == pytest.approx(
        (ce["mean"] - ce["sae"]) / (ce["mean"] - ce["orig"]), rel=1e-3
    )
