"""Per-denoising-step statistics of every feature, streamed: at which steps does a feature fire?

Diffusion stores tag each row with its `step` (and `timestep`). The pass adds each batch's active
latents as (step, feature, value) triples into `[n_steps, d_sae]` counters: rows per step, firing
count, sum and max of the activation. Memory O(steps x d_sae), independent of the number of rows.
"""

from __future__ import annotations

import torch
from torch import Tensor


class StepStats:
    """Streaming per-step counters for all features; steps grow as new step indices appear."""

    def __init__(self, d_sae: int):
        self.d_sae = d_sae
        self.rows_S = torch.zeros(0, dtype=torch.long)
        self.count_SF = torch.zeros(0, d_sae, dtype=torch.long)
        self.sum_SF = torch.zeros(0, d_sae, dtype=torch.float64)
        self.max_SF = torch.zeros(0, d_sae)
        self.timestep_S: dict[int, float] = {}

    def _grow(self, n_steps: int) -> None:
        extra = n_steps - self.rows_S.shape[0]
        if extra > 0:
            self.rows_S = torch.cat([self.rows_S, torch.zeros(extra, dtype=torch.long)])
            self.count_SF = torch.cat([self.count_SF, torch.zeros(extra, self.d_sae, dtype=torch.long)])
            self.sum_SF = torch.cat([self.sum_SF, torch.zeros(extra, self.d_sae, dtype=torch.float64)])
            self.max_SF = torch.cat([self.max_SF, torch.zeros(extra, self.d_sae)])

    def update(self, step_B: Tensor, rows_M: Tensor, feat_M: Tensor, val_M: Tensor, timestep_B=None) -> None:
        """Add a batch: `step_B [B]` per row, active latents as (row, feature, value) triples."""
        step_B = step_B.long().cpu()
        if step_B.numel() == 0:
            return
        if int(step_B.min()) < 0:
            from saekit.errors import StoreError

            raise StoreError(f"negative denoising step {int(step_B.min())} in the store's `step` field")
        self._grow(int(step_B.max()) + 1)
        self.rows_S += torch.bincount(step_B, minlength=self.rows_S.shape[0])
        if timestep_B is not None:
            for s, t in zip(step_B.unique().tolist(), _first_per_step(step_B, timestep_B.float().cpu())):
                self.timestep_S.setdefault(int(s), float(t))
        if feat_M.numel() == 0:
            return
        flat = step_B[rows_M.cpu()] * self.d_sae + feat_M.long().cpu()
        val = val_M.float().cpu()
        self.count_SF.view(-1).index_add_(0, flat, torch.ones_like(flat))
        self.sum_SF.view(-1).index_add_(0, flat, val.double())
        self.max_SF.view(-1).scatter_reduce_(0, flat, val, reduce="amax")

    def feature(self, f: int) -> dict:
        """JSON-ready per-step series of one feature (steps with no rows are left out)."""
        steps = (self.rows_S > 0).nonzero().flatten()
        rows = self.rows_S[steps].double()
        count = self.count_SF[steps, f]
        return {
            "steps": steps.tolist(),
            "timesteps": [self.timestep_S.get(int(s)) for s in steps.tolist()],
            "rows": self.rows_S[steps].tolist(),
            "frequency": (count.double() / rows).tolist(),
            "mean": (self.sum_SF[steps, f] / rows).tolist(),
            "mean_when_active": (self.sum_SF[steps, f] / count.clamp_min(1)).tolist(),
            "max": self.max_SF[steps, f].tolist(),
        }


def _first_per_step(step_B: Tensor, timestep_B: Tensor) -> list[float]:
    """Timestep of the first row of each distinct step (in `unique()` order)."""
    out = []
    for s in step_B.unique().tolist():
        out.append(float(timestep_B[(step_B == s).nonzero()[0, 0]]))
    return out
