import numpy as np
import torch

from saekit.analysis.real import RealConfig, analyze_store
from saekit.analysis.store_rows import StoreRows


def test_store_rows_read_any_order(tiny_store):
    folder, acts, doc_id, token_id = tiny_store
    rows = StoreRows(folder)
    idx = [299, 0, 71, 70, 69, 150, 0]
    r = rows.read(idx)
    torch.testing.assert_close(r.acts, acts[idx])
    assert r.doc_id.tolist() == doc_id[idx].tolist() and r.token_id.tolist() == token_id[idx].tolist()


def test_analyze_store_matches_dense_reference(tiny_store, tiny_sae):
    folder, acts, doc_id, token_id = tiny_store
    doc = analyze_store(tiny_sae, folder, "0-15", RealConfig(n_top=5, batch_size=64))
    with torch.no_grad():
        lat = tiny_sae.encode(acts).numpy()
    assert doc["summary"]["n_rows"] == 300
    assert doc["summary"]["dead_features"] == [j for j in range(16) if not (lat[:, j] > 0).any()]
    np.testing.assert_allclose(doc["all_features"]["frequency"], (lat > 0).mean(0))
    for j in range(16):
        feat = doc["features"][str(j)]
        col = lat[:, j]
        ref = np.sort(col[col > 0])[::-1][:5]
        got = [e["activation"] for e in feat["top_examples"]]
        np.testing.assert_allclose(got, ref, rtol=1e-6)
        for e in feat["top_examples"]:
            assert e["doc_id"] == int(doc_id[e["row"]]) and e["token_id"] == int(token_id[e["row"]])
            cx = e["context"]
            # the context re-encode reproduces the pass's value at the focus token
            assert abs(cx["activations"][cx["focus"]] - e["activation"]) < 1e-5
            assert cx["token_ids"][cx["focus"]] == e["token_id"]
            assert len(cx["tokens"]) == len(cx["activations"]) <= 12 + 4 + 1
        if col.max() > 0:
            assert abs(feat["stats"]["max"] - col.max()) < 1e-6
            med = np.quantile(col[col > 0], 0.5, method="inverted_cdf")
            assert abs(feat["stats"]["quantiles"]["0.5"] - med) <= 0.01 * med + 1e-9


def test_top_spec_picks_most_frequent(tiny_store, tiny_sae):
    folder, acts, *_ = tiny_store
    doc = analyze_store(tiny_sae, folder, "top:3", RealConfig(n_top=2))
    with torch.no_grad():
        counts = (tiny_sae.encode(acts) > 0).sum(0)
    want = torch.argsort(-counts, stable=True)[:3].tolist()
    assert [int(k) for k in doc["features"]] == want
