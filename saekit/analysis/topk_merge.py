"""Exact running top-N per feature across batches, memory O(features x N).

Each batch arrives as a flat list of (feature, value, key) triples — the non-zero latents — either
from a TopK SAE's sparse form `(values [B,k], indices [B,k])` or from a dense `[B, F]` matrix. The
merge is fully vectorised:

1. drop triples whose value cannot enter the feature's current top-N (value <= current N-th best);
   after the first few batches this removes almost everything, so the rest is cheap;
2. sort the survivors by (feature, value desc) — one stable sort by value, one stable sort by
   feature — and keep the first N of each feature's run (rank = position - run start);
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

    def update_dense(self, latents_BF: Tensor, keys_B: Tensor) -> None:
        """Merge a dense batch `[B, n_features]`."""
        if latents_BF.ndim != 2 or latents_BF.shape[1] != self.n_features or keys_B.shape != latents_BF.shape[:1]:
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
        n, F = self.n, self.n_features
        # order by key first so ties resolve to the smaller key, then value desc, then feature
        o = torch.argsort(key_M, stable=True)
        feat_M, val_M, key_M = feat_M[o], val_M[o], key_M[o]
        o = torch.argsort(val_M, descending=True, stable=True)
        feat_M, val_M, key_M = feat_M[o], val_M[o], key_M[o]
        o = torch.argsort(feat_M, stable=True)
        feat_M, val_M, key_M = feat_M[o], val_M[o], key_M[o]
        # rank within each feature's run
        counts_F = torch.bincount(feat_M, minlength=F)
        starts_F = torch.cumsum(counts_F, 0) - counts_F
        rank_M = torch.arange(feat_M.numel(), device=feat_M.device) - starts_F[feat_M]
        sel = rank_M < n
        feat_M, val_M, key_M, rank_M = feat_M[sel], val_M[sel], key_M[sel], rank_M[sel]
        touched = torch.unique(feat_M)
        # candidate block only for touched features: [T, N]
        slot_of = torch.full((F,), -1, dtype=torch.long, device=feat_M.device)
        slot_of[touched] = torch.arange(touched.numel(), device=feat_M.device)
        cand_v = torch.full((touched.numel(), n), float("-inf"), device=val_M.device)
        cand_k = torch.full((touched.numel(), n), -1, dtype=torch.long, device=val_M.device)
        t = slot_of[feat_M]
        cand_v[t, rank_M] = val_M
        cand_k[t, rank_M] = key_M
        # old entries first so that, at equal value, earlier-seen examples win (topk is not stable,
        # so break ties explicitly with a sort)
        all_v = torch.cat([self.values_FN[touched], cand_v], 1)
        all_k = torch.cat([self.keys_FN[touched], cand_k], 1)
        order = torch.argsort(all_v, dim=1, descending=True, stable=True)[:, :n]
        self.values_FN[touched] = torch.gather(all_v, 1, order)
        self.keys_FN[touched] = torch.gather(all_k, 1, order)
        last = self.values_FN[touched, n - 1]
        self.threshold_F[touched] = torch.where(torch.isfinite(last), last, torch.zeros_like(last))

    def state(self) -> TopKState:
        return TopKState(self.values_FN.clone(), self.keys_FN.clone())

    def examples(self, feature: int) -> list[tuple[float, int]]:
        """(value, key) pairs of one feature, best first, empty slots dropped."""
        v, k = self.values_FN[feature], self.keys_FN[feature]
        ok = k >= 0
        return list(zip(v[ok].tolist(), k[ok].tolist()))
