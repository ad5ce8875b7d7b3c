"""Streaming per-feature statistics: firing frequency, mean/max when active, quantiles, histogram.

Quantiles use a log-linear bucket sketch (the HDR-histogram / DDSketch idea): a positive float32
value's bucket is its bit pattern shifted right by `23 - m` — the exponent plus the top `m` mantissa
bits — so bucket `[lo, hi)` has `hi - lo <= lo * 2^-m`, and reporting the bucket midpoint is within
relative error `alpha = 2^-(m+1)` (m=6: 0.78%) of every value in it. Every quantile estimate is
therefore within `alpha` of the exact order statistic (`numpy.quantile(..., method="inverted_cdf")`),
for values in `[2^min_exp, 2^max_exp)` (outside, they are clamped into the end buckets; the exact max
is tracked separately). A shift is far cheaper than a log per active latent. Memory is
`O(features x buckets)` (`64 x 28` buckets by default), independent of the number of tokens. The
same buckets give the histogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from saekit.errors import ShapeError


@dataclass(frozen=True)
class SketchConfig:
    """Resolution and range of the quantile sketch."""

    mantissa_bits: int = 6
    """Mantissa bits per bucket: relative error alpha = 2^-(bits+1) (6 -> 0.78%)."""
    min_exp: int = -14
    """Values below 2^min_exp (6e-5) share the first bucket."""
    max_exp: int = 14
    """Values at or above 2^max_exp (16384) share the last bucket."""

    @property
    def alpha(self) -> float:
        return 2.0 ** -(self.mantissa_bits + 1)


def _bits(x: float) -> int:
    return int(torch.tensor(x, dtype=torch.float32).view(torch.int32))


class FeatureStats:
    """Accumulates statistics of `n_features` latents over a stream of batches."""

    def __init__(
        self, n_features: int, cfg: SketchConfig = SketchConfig(), device: torch.device | str = "cpu"
    ):
        self.cfg = cfg
        self.n_features = n_features
        self.shift = 23 - cfg.mantissa_bits
        self.b_min = _bits(2.0**cfg.min_exp) >> self.shift
        self.b_max = (_bits(2.0**cfg.max_exp) >> self.shift) - 1
        self.n_buckets = self.b_max - self.b_min + 1
        self.n_rows = 0
        self.sum_F = torch.zeros(n_features, dtype=torch.float64, device=device)
        self.max_F = torch.zeros(n_features, device=device)
        self.sketch_FB = torch.zeros(n_features, self.n_buckets, dtype=torch.int32, device=device)

    @property
    def count_F(self) -> Tensor:
        """Number of rows on which each feature was > 0 (exact: every positive value is in one bucket)."""
        return self.sketch_FB.sum(1, dtype=torch.long)

    # -- updates ------------------------------------------------------------------------------------
    def update_sparse(self, values_BK: Tensor, indices_BK: Tensor) -> None:
        """Add a batch in sparse form (zeros among the values are ignored)."""
        if values_BK.shape != indices_BK.shape:
            raise ShapeError(f"values {tuple(values_BK.shape)} and indices {tuple(indices_BK.shape)} differ")
        self.n_rows += values_BK.shape[0]
        v = values_BK.detach().reshape(-1).float()
        f = indices_BK.reshape(-1).long()
        pos = v > 0
        self._add(f[pos], v[pos])

    def update_dense(self, latents_BF: Tensor) -> None:
        """Add a dense batch `[B, n_features]`."""
        if latents_BF.ndim != 2 or latents_BF.shape[1] != self.n_features:
            raise ShapeError(f"expected latents [B, {self.n_features}], got {tuple(latents_BF.shape)}")
        self.n_rows += latents_BF.shape[0]
        rows, feats = (latents_BF > 0).nonzero(as_tuple=True)
        self._add(feats, latents_BF[rows, feats].detach().float())

    def update_triples(self, f_M: Tensor, v_M: Tensor, n_rows: int) -> None:
        """Add the positive entries of `n_rows` rows given as flat (feature, value) lists."""
        self.n_rows += n_rows
        self._add(f_M.long(), v_M)

    def _add(self, f_M: Tensor, v_M: Tensor) -> None:
        if f_M.numel() == 0:
            return
        v_M = v_M.float().contiguous()
        self.sum_F.index_add_(0, f_M, v_M.double())
        self.max_F.scatter_reduce_(0, f_M, v_M, reduce="amax")
        b = (v_M.view(torch.int32) >> self.shift).clamp_(self.b_min, self.b_max).long() - self.b_min
        flat = self.sketch_FB.view(-1)
        flat.index_put_((f_M * self.n_buckets + b,), torch.ones_like(b, dtype=torch.int32), accumulate=True)

    # -- results ------------------------------------------------------------------------------------
    def frequency(self) -> Tensor:
        """Fraction of rows on which each feature is > 0, `[F]`."""
        return self.count_F.double() / max(self.n_rows, 1)

    def mean_when_active(self) -> Tensor:
        """Mean of the positive values, NaN for features that never fired."""
        return torch.where(self.count_F > 0, self.sum_F / self.count_F.clamp_min(1), float("nan"))

    def bucket_edges(self) -> Tensor:
        """Lower edge of each bucket and the upper edge of the last, `[n_buckets + 1]` (float64)."""
        b = torch.arange(self.b_min, self.b_max + 2, dtype=torch.int32) << self.shift
        return b.view(torch.float32).double()

    def bucket_values(self) -> Tensor:
        """Representative (midpoint) value of each bucket `[n_buckets]`."""
        e = self.bucket_edges()
        return (e[:-1] + e[1:]) / 2

    def quantiles(self, qs: list[float], features: Tensor | None = None) -> Tensor:
        """Quantiles of the positive values, `[len(features), len(qs)]` (NaN where never fired).

        Rank convention: the ceil(q * n)-th smallest value (numpy `inverted_cdf`), q in (0, 1].
        """
        sk = self.sketch_FB if features is None else self.sketch_FB[features]
        counts = self.count_F if features is None else self.count_F[features]
        cum = torch.cumsum(sk.long(), 1)
        reps = self.bucket_values()
        out = torch.full((sk.shape[0], len(qs)), float("nan"), dtype=torch.float64)
        for j, q in enumerate(qs):
            rank = torch.ceil(torch.tensor(q, dtype=torch.float64) * counts.double()).long().clamp_min(1)
            b = torch.searchsorted(cum, rank[:, None]).squeeze(1).clamp_max(self.n_buckets - 1)
            out[:, j] = torch.where(counts > 0, reps[b], torch.tensor(float("nan"), dtype=torch.float64))
        return out

    def histogram(self, feature: int, n_bins: int = 40) -> tuple[list[float], list[int]]:
        """Log-spaced histogram of one feature's positive values: (bin edges [n+1], counts [n]).

        Built from the sketch buckets between the smallest and largest occupied bucket.
        """
        row = self.sketch_FB[feature].long()
        occ = row.nonzero().flatten()
        if occ.numel() == 0:
            return [], []
        lo, hi = int(occ[0]), int(occ[-1]) + 1
        per = max(1, math.ceil((hi - lo) / n_bins))
        edges_all = self.bucket_edges()
        starts = list(range(lo, hi, per))
        counts = [int(row[s : min(s + per, hi)].sum()) for s in starts]
        edges = [float(edges_all[s]) for s in starts] + [float(edges_all[min(starts[-1] + per, hi)])]
        return edges, counts
