import numpy as np
import torch

from saekit.analysis.stats import FeatureStats, SketchConfig

torch.set_num_threads(2)


def _data(seed=0, rows=500, feats=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, feats, generator=g).exp() * (torch.rand(rows, feats, generator=g) < 0.3)
    x[:, 5] = 0  # a dead feature
    return x


def test_dense_stats_match_numpy():
    x = _data()
    st = FeatureStats(6)
    for s in range(0, 500, 64):
        st.update_dense(x[s : s + 64])
    xn = x.numpy()
    np.testing.assert_allclose(st.frequency().numpy(), (xn > 0).mean(0))
    qs = [0.1, 0.5, 0.9, 0.99, 1.0]
    est = st.quantiles(qs).numpy()
    for f in range(5):
        col = xn[:, f][xn[:, f] > 0]
        np.testing.assert_allclose(st.mean_when_active()[f].item(), col.mean(), rtol=1e-5)
        assert st.max_F[f].item() == col.max()
        ref = np.quantile(col, qs, method="inverted_cdf")
        np.testing.assert_allclose(est[f], ref, rtol=SketchConfig().alpha + 1e-9)
    assert np.isnan(est[5]).all() and np.isnan(st.mean_when_active()[5].item())
    edges, counts = st.histogram(0)
    assert sum(counts) == (xn[:, 0] > 0).sum() and len(edges) == len(counts) + 1
    assert edges[0] <= xn[:, 0][xn[:, 0] > 0].min() <= edges[-1]


def test_sparse_equals_dense():
    x = _data(1)
    vals, idx = x.topk(3, dim=1)
    dense = torch.zeros_like(x).scatter_(1, idx, vals)
    a, b = FeatureStats(6), FeatureStats(6)
    a.update_sparse(vals, idx)
    b.update_dense(dense)
    assert torch.equal(a.count_F, b.count_F) and torch.equal(a.sketch_FB, b.sketch_FB)
    assert a.n_rows == b.n_rows == 500
