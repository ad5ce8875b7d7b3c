import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from saekit.analysis.topk_merge import TopKTracker

torch.set_num_threads(2)


def brute_force(values_TF: np.ndarray, n: int):
    """Per feature: sorted positive values (desc), top n."""
    out = []
    for f in range(values_TF.shape[1]):
        col = values_TF[:, f]
        col = np.sort(col[col > 0])[::-1][:n]
        out.append(col)
    return out


def check(tracker, dense, n):
    ref = brute_force(dense, n)
    for f in range(dense.shape[1]):
        ex = tracker.examples(f)
        got_v = np.array([v for v, _ in ex], dtype=np.float32)
        np.testing.assert_array_equal(got_v, ref[f].astype(np.float32))
        for v, key in ex:  # each key really holds that value
            assert dense[key, f] == np.float32(v)
        assert len({k for _, k in ex}) == len(ex)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_rows=st.integers(1, 60),
    n_feat=st.integers(1, 12),
    n=st.integers(1, 7),
    batch=st.integers(1, 16),
    ties=st.booleans(),
)
def test_dense_merge_matches_brute_force(seed, n_rows, n_feat, n, batch, ties):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, n_feat, generator=g)
    if ties:
        x = torch.round(x * 2) / 2
    x = x.relu()
    tr = TopKTracker(n_feat, n)
    for s in range(0, n_rows, batch):
        tr.update_dense(x[s : s + batch], torch.arange(s, min(s + batch, n_rows)))
    check(tr, x.numpy(), n)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_rows=st.integers(1, 60),
    n_feat=st.integers(2, 12),
    n=st.integers(1, 7),
    batch=st.integers(1, 16),
)
def test_sparse_merge_matches_brute_force(seed, n_rows, n_feat, n, batch):
    g = torch.Generator().manual_seed(seed)
    k = min(3, n_feat)
    pre = torch.randn(n_rows, n_feat, generator=g)
    vals, idx = pre.topk(k, dim=-1)
    vals = vals.relu()
    dense = torch.zeros_like(pre).scatter_(1, idx, vals)
    tr = TopKTracker(n_feat, n)
    for s in range(0, n_rows, batch):
        e = min(s + batch, n_rows)
        tr.update_sparse(vals[s:e], idx[s:e], torch.arange(s, e))
    check(tr, dense.numpy(), n)


def test_ties_keep_first_seen():
    tr = TopKTracker(1, 2)
    tr.update_dense(torch.tensor([[1.0], [1.0]]), torch.tensor([0, 1]))
    tr.update_dense(torch.tensor([[1.0], [2.0]]), torch.tensor([2, 3]))
    assert tr.examples(0) == [(2.0, 3), (1.0, 0)]


def test_elementwise_merge_would_be_wrong_here():
    """The seed notebook's elementwise max across batches loses the second-best of one batch."""
    tr = TopKTracker(1, 2)
    tr.update_dense(torch.tensor([[5.0], [4.0]]), torch.tensor([0, 1]))
    tr.update_dense(torch.tensor([[1.0], [0.5]]), torch.tensor([2, 3]))
    assert [k for _, k in tr.examples(0)] == [0, 1]
