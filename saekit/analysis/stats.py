"""Streaming per-feature statistics: firing frequency, mean/max when active, quantiles, histogram.

Quantiles use a log-bucket sketch (the DDSketch idea, Masson et al. 2019): a positive value `v` goes
into bucket `i = ceil(log_gamma(v))` with `gamma = (1 + alpha) / (1 - alpha)`; reporting the bucket's
midpoint `2 gamma^i / (gamma + 1)` is within relative error `alpha` of every value in the bucket, so
every quantile estimate is within `alpha` (default 1%) of the exact order statistic
(`numpy.quantile(..., method="inverted_cdf")`) — as long as values lie in `[min_value, max_value]`
(values outside are clamped into the end buckets; the exact max is tracked separately). Memory is
`O(features x buckets)`, independent of the number of tokens. The same buckets give the histogram.
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

    alpha: float = 0.01
    """Guaranteed relative error of quantile estimates for values inside the range."""
    min_value: float = 1e-5
    """Smallest distinguishable positive activation; smaller ones share the first bucket."""
    max_value: float = 1e5
    """Largest distinguishable activation; larger ones share the last bucket."""


class FeatureStats:
    """Accumulates statistics of `n_features` latents over a stream of batches."""

    def __init__(self, n_features: int, cfg: SketchConfig = SketchConfig(), device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.n_features = n_features
        self.gamma = (1 + cfg.alpha) / (1 - cfg.alpha)
        self.log_gamma = math.log(self.gamma)
        self.i_min = math.ceil(math.log(cfg.min_value) / self.log_gamma)
        self.i_max = math.ceil(math.log(cfg.max_value) / self.log_gamma)
        self.n_buckets = self.i_max - self.i_min + 1
        self.n_rows = 0
        self.count_F = torch.zeros(n_features, dtype=torch.long, device=device)
        self.sum_F = torch.zeros(n_features, dtype=torch.float64, device=device)
        self.max_F = torch.zeros(n_features, device=device)
        self.sketch_FB = torch.zeros(n_features, self.n_buckets, dtype=torch.int32, device=device)

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

    def _add(self, f_M: Tensor, v_M: Tensor) -> None:
        if f_M.numel() == 0:
            return
        self.count_F += torch.bincount(f_M, minlength=self.n_features)
        self.sum_F.index_add_(0, f_M, v_M.double())
        self.max_F.scatter_reduce_(0, f_M, v_M, reduce="amax")
        b = torch.ceil(torch.log(v_M) / self.log_gamma).long().clamp_(self.i_min, self.i_max) - self.i_min
        flat = self.sketch_FB.view(-1)
        flat.index_put_((f_M * self.n_buckets + b,), torch.ones_like(b, dtype=torch.int32), accumulate=True)

    # -- results ------------------------------------------------------------------------------------
    def frequency(self) -> Tensor:
        """Fraction of rows on which each feature is > 0, `[F]`."""
        return self.count_F.double() / max(self.n_rows, 1)

    def mean_when_active(self) -> Tensor:
        """Mean of the positive values, NaN for features that never fired."""
        return torch.where(self.count_F > 0, self.sum_F / self.count_F.clamp_min(1), float("nan"))

    def bucket_values(self) -> Tensor:
        """Representative value of each bucket `[n_buckets]`."""
        i = torch.arange(self.i_min, self.i_max + 1, dtype=torch.float64)
        return 2 * self.gamma**i / (self.gamma + 1)

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
        counts = [int(row[s:min(s + per, hi)].sum()) for s in range(lo, hi, per)]
        edges = [float(self.gamma ** (self.i_min + s - 1)) for s in range(lo, hi, per)]
        edges.append(float(self.gamma ** (self.i_min + min(lo + per * len(counts), hi) - 1)))
        return edges, counts
