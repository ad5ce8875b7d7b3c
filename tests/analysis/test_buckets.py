"""Examples from every activation bucket and nearest features, as `analyze real` writes them."""

import numpy as np
import torch

from saekit.analysis.buckets import FiringSample, bucket_examples
from saekit.analysis.real import RealConfig, analyze_store


def test_firing_sample_is_uniform_without_replacement():
    """Bottom-k of random priorities: 1000 of 20000 firings, no duplicates, mean row ~ the middle."""
    s = FiringSample(n_features=2, pool=1000, seed=0)
    for start in range(0, 20000, 4096):
        rows = torch.arange(start, min(start + 4096, 20000))
        vals = torch.ones(rows.numel(), 1)
        s.update_sparse(vals, torch.zeros(rows.numel(), 1, dtype=torch.long), rows)
    got = s.rows(0)
    assert len(got) == len(set(got)) == 1000 and s.rows(1) == []
    # mean of a uniform 1000-sample of 0..19999: 9999.5 +- 3 sd (sd = 5773 / sqrt(1000) = 183)
    assert abs(np.mean(got) - 9999.5) < 3 * 183


def test_bucket_examples_groups_by_quantile_top_first():
    ex = [{"activation": float(v)} for v in range(1, 11)]
    got = bucket_examples(ex, {"0.5": 5.5, "0.9": 9.5}, 10.0, per_bucket=2)
    assert [(b["q_lo"], b["q_hi"]) for b in got] == [(0.9, 1.0), (0.5, 0.9), (0.0, 0.5)]
    assert [e["activation"] for e in got[0]["examples"]] == [10.0]
    assert [e["activation"] for e in got[1]["examples"]] == [9.0, 6.0]  # highest and lowest of 6..9
    assert [e["activation"] for e in got[2]["examples"]] == [5.0, 1.0]


def test_analyze_real_writes_bucket_examples_and_nearest(tiny_store, tiny_sae):
    folder, acts, doc_id, token_id = tiny_store
    cfg = RealConfig(n_top=5, batch_size=64, bucket_examples=3, bucket_pool=400, n_nearest=4)
    doc = analyze_store(tiny_sae, folder, "0-15", cfg)
    with torch.no_grad():
        lat = tiny_sae.encode(acts).numpy()
    dec = tiny_sae.decoder_directions().detach().double().numpy()
    dec /= np.linalg.norm(dec, axis=1, keepdims=True)
    n_checked = 0
    for j in range(16):
        feat = doc["features"][str(j)]
        cos = dec @ dec[j]
        cos[j] = -np.inf
        want = np.argsort(-cos, kind="stable")[:4]
        assert [n["feature"] for n in feat["nearest"]] == want.tolist()
        np.testing.assert_allclose([n["cosine"] for n in feat["nearest"]], cos[want], atol=1e-5)
        col = lat[:, j]
        if not (col > 0).any():
            assert all(not b["examples"] for b in feat.get("bucket_examples", []))
            continue
        buckets = feat["bucket_examples"]
        assert buckets[0]["q_hi"] == 1.0 and buckets[0]["hi"] == feat["stats"]["max"]
        for b in buckets:
            last = b["q_hi"] == 1.0
            # pool 400 > 300 rows: every firing is in the sample, so the bucket shows min(3, firings in it)
            inside = ((col >= b["lo"]) & ((col < b["hi"]) | last) & (col > 0)).sum()
            assert len(b["examples"]) == min(3, int(inside))
            for e in b["examples"]:
                assert abs(e["activation"] - col[e["row"]]) < 1e-5
                assert b["lo"] <= e["activation"] <= b["hi"]
                assert e["doc_id"] == int(doc_id[e["row"]]) and e["token_id"] == int(token_id[e["row"]])
                cx = e["context"]
                assert cx["token_ids"][cx["focus"]] == e["token_id"]
                n_checked += 1
    assert n_checked > 20


def test_bucket_examples_and_nearest_can_be_turned_off(tiny_store, tiny_sae):
    folder, *_ = tiny_store
    doc = analyze_store(tiny_sae, folder, "0-3", RealConfig(n_top=2, bucket_examples=0, n_nearest=0))
    assert all("bucket_examples" not in f and "nearest" not in f for f in doc["features"].values())


def test_top_bucket_shows_top_examples_even_with_a_tiny_sample(tiny_store, tiny_sae):
    """A 2-firing sample rarely holds a p99-max firing; the top examples fill that bucket."""
    folder, *_ = tiny_store
    doc = analyze_store(tiny_sae, folder, "0-15", RealConfig(n_top=5, bucket_pool=2))
    for f in doc["features"].values():
        if f["stats"]["count"]:
            assert f["bucket_examples"][0]["examples"][0]["activation"] == f["stats"]["max"]
