"""Percentile bootstrap intervals of statistics of summed per-row values, resampling clusters of rows.

Every bench figure is a function of sums: a mean is `sum value / sum count`, FVU is `sum error /
(sum ||x||^2 - ||sum x||^2 / n)`, CE recovered is `(sum ce_zero - sum ce_sae) / (sum ce_zero - sum
ce_orig)`. So each row carries its summands (`stats [rows, m]`), rows are first summed within their
cluster (a document, a context, a test-set group: rows of one cluster are correlated, so the cluster
is the unit that is resampled), and a bootstrap replicate is `counts @ cluster_sums` with multinomial
counts. The statistic sees the totals, `[..., m]`, and must work on any leading batch shape, so all
replicates are computed in one call. With `strata`, clusters are resampled within their stratum (each
stratum keeps its number of clusters) and the statistic sees `[..., n_strata, m]`: a mean over
tasks or letters of a per-stratum figure.

The interval is the plain percentile interval of the replicates; the reported value is the statistic
of the full sample, not the replicates' mean. An interval says how much the figure would move on
another sample of this many clusters from the same source, nothing about other corpora or models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from saekit.errors import ShapeError


class Interval(NamedTuple):
    """A figure with its bootstrap interval."""

    value: float
    """The statistic on the full sample."""
    lo: float
    """Lower end of the percentile interval."""
    hi: float
    """Upper end of the percentile interval."""
    n: int
    """Clusters resampled (the bootstrap's unit: contexts, test groups, words, letters)."""

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}

    def fmt(self, digits: int = 3, scale: float = 1.0) -> str:
        """`0.123 [0.110, 0.135]`, the figures multiplied by `scale` (100 for percentages)."""
        v, lo, hi = (x * scale for x in (self.value, self.lo, self.hi))
        if not np.isfinite(v):
            return "n/a"
        if not (np.isfinite(lo) and np.isfinite(hi)):  # a figure reported without an interval
            return f"{v:.{digits}f}"
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def cluster_sums(stats_NM: np.ndarray, clusters_N: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """`(sums [n_clusters, m], cluster ids in order)`: rows summed per cluster (each row its own without)."""
    stats_NM = np.asarray(stats_NM, dtype=np.float64)
    if stats_NM.ndim != 2:
        raise ShapeError(f"bootstrap stats must be [rows, m], got shape {stats_NM.shape}")
    if clusters_N is None:
        return stats_NM, np.arange(stats_NM.shape[0])
    clusters_N = np.asarray(clusters_N)
    if clusters_N.shape != (stats_NM.shape[0],):
        raise ShapeError(f"one cluster id per row: {clusters_N.shape} ids for {stats_NM.shape[0]} rows")
    ids, inverse = np.unique(clusters_N, return_inverse=True)
    sums = np.zeros((len(ids), stats_NM.shape[1]))
    np.add.at(sums, inverse, stats_NM)
    return sums, ids


def bootstrap(
    stats_NM: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    clusters: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile interval of `statistic(totals)`, resampling clusters of rows (module docstring).

    `stats_NM [rows, m]`: per-row summands. `clusters [rows]`: cluster id of each row (None: every row is
    its own). `strata [rows]`: stratum of each row (constant within a cluster); the statistic then gets
    `[..., n_strata, m]` totals, strata in sorted order. `n_boot=0` gives the value with a NaN interval.
    """
    if not 0 < level < 1:
        raise ShapeError(f"level must be in (0, 1), got {level}")
    sums_CM, ids = cluster_sums(stats_NM, clusters)
    n_clusters = sums_CM.shape[0]
    if n_clusters == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    if strata is None:
        value = float(statistic(sums_CM.sum(0)))
        if n_boot <= 0:
            return Interval(value, float("nan"), float("nan"), n_clusters)
        counts_BC = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot)
        reps = np.asarray(statistic(counts_BC @ sums_CM), dtype=np.float64)
    else:
        cluster_stratum = _cluster_strata(np.asarray(strata), clusters, ids, stats_NM)
        levels = np.unique(cluster_stratum)
        per = [sums_CM[cluster_stratum == s] for s in levels]
        value = float(statistic(np.stack([p.sum(0) for p in per])))
        if n_boot <= 0:
            return Interval(value, float("nan"), float("nan"), n_clusters)
        totals = []
        for p in per:
            c = p.shape[0]
            counts = rng.multinomial(c, np.full(c, 1.0 / c), size=n_boot)
            totals.append(counts @ p)
        reps = np.asarray(statistic(np.stack(totals, axis=1)), dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return Interval(value, float("nan"), float("nan"), n_clusters)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return Interval(value, float(lo), float(hi), n_clusters)


def _cluster_strata(strata_N: np.ndarray, clusters_N, ids: np.ndarray, stats_NM) -> np.ndarray:
    """The stratum of each cluster (in `ids` order); a cluster spanning two strata is refused."""
    if strata_N.shape != (np.asarray(stats_NM).shape[0],):
        raise ShapeError(f"one stratum per row: {strata_N.shape} for {np.asarray(stats_NM).shape[0]} rows")
    if clusters_N is None:
        return strata_N
    clusters_N = np.asarray(clusters_N)
    out = np.empty(len(ids), dtype=strata_N.dtype)
    for i, c in enumerate(ids):
        s = np.unique(strata_N[clusters_N == c])
        if len(s) != 1:
            raise ShapeError(f"cluster {c!r} spans strata {s.tolist()}; a cluster must lie in one stratum")
        out[i] = s[0]
    return out


def mean_stat(totals: np.ndarray) -> np.ndarray:
    """`sum value / sum count` for `[..., 2]` totals (value, count)."""
    return totals[..., 0] / np.maximum(totals[..., 1], 1e-300)


def mean_of_strata(totals: np.ndarray) -> np.ndarray:
    """The unweighted mean over strata of each stratum's `value / count` (`[..., n_strata, 2]`)."""
    return mean_stat(totals).mean(-1)
