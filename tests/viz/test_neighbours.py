"""Nearest features by decoder cosine, against a brute-force numpy reference."""

import numpy as np
import torch

from saekit.viz.browser.neighbours import nearest_by_cosine


def test_matches_brute_force_and_excludes_self():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(50, 8, generator=g) * torch.rand(50, 1, generator=g)  # unnormalised rows
    d[10] = 3 * d[20]  # same direction, other norm: cosine 1
    got = nearest_by_cosine(d, [10, 20, 33], k=5, block=2)
    a = d.numpy().astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    for f in (10, 20, 33):
        cos = a @ a[f]
        cos[f] = -np.inf
        want = np.argsort(-cos)[:5]
        assert [j for j, _ in got[f]] == want.tolist()
        np.testing.assert_allclose([c for _, c in got[f]], cos[want], atol=1e-5)
        assert f not in [j for j, _ in got[f]]
    assert got[10][0][0] == 20 and abs(got[10][0][1] - 1.0) < 1e-5


def test_k_is_capped_by_the_dictionary_size():
    got = nearest_by_cosine(torch.eye(3), [0], k=10)
    assert sorted(j for j, _ in got[0]) == [1, 2]
    assert nearest_by_cosine(torch.eye(3), []) == {}


def test_dictionary_chunks_give_the_same_neighbours():
    """The running top-k over dictionary chunks (7 rows, not a divisor of 50) equals one big matrix."""
    d = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    whole = nearest_by_cosine(d, list(range(50)), k=4, key_block=1 << 20)
    chunked = nearest_by_cosine(d, list(range(50)), k=4, block=3, key_block=7)
    for f in range(50):
        assert [j for j, _ in chunked[f]] == [j for j, _ in whole[f]]
        np.testing.assert_allclose([c for _, c in chunked[f]], [c for _, c in whole[f]], atol=1e-6)
