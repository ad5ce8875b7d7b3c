"""Bootstrap intervals on distributions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from saekit.bench.bootstrap import Interval, bootstrap, mean_of_strata, mean_stat


def _rows(values):
    v = np.asarray(values, dtype=np.float64)
    return np.stack([v, np.ones_like(v)], axis=1)


def test_interval_contains_the_true_mean_of_a_normal_sample():
    x = np.random.default_rng(0).normal(3.0, 1.0, size=1000)
    iv = bootstrap(_rows(x), mean_stat, n_boot=2000, seed=1)
    assert iv.value == pytest.approx(x.mean())
    assert iv.lo < 3.0 < iv.hi
    assert iv.hi - iv.lo == pytest.approx(2 * 1.96 / np.sqrt(1000), rel=0.15)  # the normal-theory width


def test_coverage_of_the_true_mean_is_near_95_percent():
    """Exponential(1) samples of 200 (skewed): the 95% interval holds the true mean 1 in ~95% of them."""
    rng = np.random.default_rng(2)
    hits = [
        (iv.lo < 1.0 < iv.hi)
        for i in range(200)
        for iv in [bootstrap(_rows(rng.exponential(1.0, 200)), mean_stat, n_boot=400, seed=i)]
    ]
    assert 0.88 <= np.mean(hits) <= 0.99


def test_clusters_widen_the_interval_of_correlated_rows():
    """20 documents of 50 identical-ish tokens: the cluster bootstrap is as wide as 20 samples, not 1000."""
    rng = np.random.default_rng(3)
    doc_means = rng.normal(0.0, 1.0, 20)
    x = np.repeat(doc_means, 50) + rng.normal(0, 0.01, 1000)
    docs = np.repeat(np.arange(20), 50)
    naive = bootstrap(_rows(x), mean_stat, n_boot=1000)
    clustered = bootstrap(_rows(x), mean_stat, clusters=docs, n_boot=1000)
    assert clustered.n == 20 and naive.n == 1000
    assert clustered.value == pytest.approx(naive.value)
    assert (clustered.hi - clustered.lo) > 4 * (naive.hi - naive.lo)
    assert clustered.lo < 0.0 < clustered.hi


def test_ratio_statistic_value_is_the_ratio_of_sums():
    rng = np.random.default_rng(4)
    err, var = rng.random(50), 1 + rng.random(50)
    iv = bootstrap(np.stack([err, var], 1), lambda t: t[..., 0] / t[..., 1], n_boot=100)
    assert iv.value == pytest.approx(err.sum() / var.sum())


def test_strata_give_the_unweighted_mean_of_stratum_means():
    values = np.array([1, 1, 1, 1, 0, 0.0])  # stratum 0: four ones, stratum 1: two zeros
    strata = np.array([0, 0, 0, 0, 1, 1])
    iv = bootstrap(_rows(values), mean_of_strata, strata=strata, n_boot=200)
    assert iv.value == pytest.approx(0.5)  # not 4/6: each stratum weighs the same
    assert iv.lo == pytest.approx(0.5) and iv.hi == pytest.approx(0.5)  # constant within each stratum


def test_empty_and_no_resampling():
    assert np.isnan(bootstrap(np.zeros((0, 2)), mean_stat).value)
    iv = bootstrap(_rows([1.0, 2.0]), mean_stat, n_boot=0)
    assert iv.value == 1.5 and np.isnan(iv.lo)
    assert Interval(0.1234, 0.1, 0.15, 3).fmt(2, scale=100) == "12.34 [10.00, 15.00]"
