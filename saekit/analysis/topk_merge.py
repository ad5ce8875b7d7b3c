"""Exact running top-N per feature across batches, memory O(features x N).

Each batch arrives as a flat list of (feature, value, key) triples — the non-zero latents — either
from a TopK SAE's sparse form `(values [B,k], indices [B,k])` or from a dense `[B, F]` matrix. The
merge is fully vectorised:

1. drop triples whose value cannot enter the feature's current top-N (value <= current N-th best);
   after the first few batches this removes almost everything, so the rest is cheap;
2. sort the survivors by (feature, value desc) — one stable sort of a composite int64 key built
   from the feature id and the float bits — and keep the first N of each feature's run;
3. scatter those into a `[F, N]` candidate block, concatenate with the state `[F, N]` and take the
   row-wise top-N of `[F, 2N]`.

Ties at equal value keep the entry seen first (smaller key on the same batch), so results are
deterministic. Keys are int64 and opaque here (the real pass uses the global row index).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from saekit.errors import ShapeError


@dataclass
class TopKState:
    """Top-N so far: `values [F, N]` sorted descending (-inf = empty slot), `keys [F, N]` (-1 = empty)."""

    values: Tensor
    keys: Tensor


class TopKTracker:
    """Running exact top-`n` (value, key) pairs for each of `n_features` features.

    Only strictly positive values are tracked: a feature that never fires has no examples.
    """

    def __init__(self, n_features: int, n: int, device: torch.device | str = "cpu"):
        if n_features <= 0 or n <= 0:
            raise ShapeError(f"TopKTracker needs n_features > 0 and n > 0, got {n_features}, {n}")
        self.n_features = n_features
        self.n = n
        self.values_FN = torch.full((n_features, n), float("-inf"), device=device)
        self.keys_FN = torch.full((n_features, n), -1, dtype=torch.long, device=device)
        # N-th best value per feature (0 until the slot fills: only positive values are kept).
        self.threshold_F = torch.zeros(n_features, device=device)

    def update_sparse(self, values_BK: Tensor, indices_BK: Tensor, keys_B: Tensor) -> None:
        """Merge a TopK-style batch: row b has values `values_BK[b]` at features `indices_BK[b]`."""
        if values_BK.shape != indices_BK.shape or values_BK.ndim != 2 or keys_B.shape != values_BK.shape[:1]:
            raise ShapeError(
                f"update_sparse expects values [B,k], indices [B,k], keys [B]; got {tuple(values_BK.shape)}, "
                f"{tuple(indices_BK.shape)}, {tuple(keys_B.shape)}"
            )
        vals = values_BK.detach().float()
        idx = indices_BK.long()
        keep = vals > self.threshold_F[idx]
        if not bool(keep.any()):
            return
        rows = keep.nonzero(as_tuple=True)[0]
        self._merge(idx[keep], vals[keep], keys_B.long()[rows])

    def update_triples(self, feat_M: Tensor, val_M: Tensor, key_M: Tensor) -> None:
        """Merge non-zero entries given as flat (feature, value, key) lists, in key order."""
        keep = val_M > self.threshold_F[feat_M]
        if bool(keep.any()):
            self._merge(feat_M[keep].long(), val_M[keep].float(), key_M[keep].long())

    def update_dense(self, latents_BF: Tensor, keys_B: Tensor) -> None:
        """Merge a dense batch `[B, n_features]`."""
        if (
            latents_BF.ndim != 2
            or latents_BF.shape[1] != self.n_features
            or keys_B.shape != latents_BF.shape[:1]
        ):
            raise ShapeError(
                f"update_dense expects latents [B, {self.n_features}] and keys [B]; got "
                f"{tuple(latents_BF.shape)}, {tuple(keys_B.shape)}"
            )
        lat = latents_BF.detach()
        keep = lat > self.threshold_F.to(lat.dtype)
        if not bool(keep.any()):
            return
        rows, feats = keep.nonzero(as_tuple=True)
        self._merge(feats, lat[rows, feats].float(), keys_B.long()[rows])

    def _merge(self, feat_M: Tensor, val_M: Tensor, key_M: Tensor) -> None:
        """Merge candidates given in key order (rows ascending), values > 0."""
        n, F = self.n, self.n_features
        # one stable sort on a composite int64: feature ascending, then value descending. Positive
        # float32 bit patterns order like the floats, so (2^31 - 1 - bits) orders them descending;
        # stability keeps key order among equal values.
        bits = val_M.float().contiguous().view(torch.int32).long()
        order = torch.sort((feat_M << 32) | ((1 << 31) - 1 - bits), stable=True).indices
        feat_M, val_M, key_M = feat_M[order], val_M[order], key_M[order]
        # rank within each feature's run
        counts_F = torch.bincount(feat_M, minlength=F)
        starts_F = torch.cumsum(counts_F, 0) - counts_F
        rank_M = torch.arange(feat_M.numel(), device=feat_M.device) - starts_F[feat_M]
        sel = rank_M < n
        feat_M, val_M, key_M, rank_M = feat_M[sel], val_M[sel], key_M[sel], rank_M[sel]
        if 4 * feat_M.numel() < F * n:  # few features touched: work on those rows only
            touched = torch.unique(feat_M)
            slot = torch.searchsorted(touched, feat_M)
        else:
            touched, slot = None, feat_M
        T = F if touched is None else touched.numel()
        cand_v = torch.full((T, n), float("-inf"), device=val_M.device)
        cand_k = torch.full((T, n), -1, dtype=torch.long, device=val_M.device)
        cand_v[slot, rank_M] = val_M
        cand_k[slot, rank_M] = key_M
        old_v = self.values_FN if touched is None else self.values_FN[touched]
        old_k = self.keys_FN if touched is None else self.keys_FN[touched]
        # old entries first: at equal value the earlier-seen example wins (stable sort)
        all_v = torch.cat([old_v, cand_v], 1)
        order = torch.sort(all_v, dim=1, descending=True, stable=True).indices[:, :n]
        new_v = torch.gather(all_v, 1, order)
        new_k = torch.gather(torch.cat([old_k, cand_k], 1), 1, order)
        last = new_v[:, n - 1]
        new_t = torch.where(torch.isfinite(last), last, torch.zeros_like(last))
        if touched is None:
            self.values_FN, self.keys_FN, self.threshold_F = new_v, new_k, new_t
        else:
            self.values_FN[touched], self.keys_FN[touched], self.threshold_F[touched] = new_v, new_k, new_t

    def state(self) -> TopKState:
        return TopKState(self.values_FN.clone(), self.keys_FN.clone())

    def examples(self, feature: int) -> list[tuple[float, int]]:
        """(value, key) pairs of one feature, best first, empty slots dropped."""
        v, k = self.values_FN[feature], self.keys_FN[feature]
        ok = k >= 0
        return list(zip(v[ok].tolist(), k[ok].tolist()))
