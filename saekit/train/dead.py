"""Dead-latent bookkeeping: rows seen since each latent last fired."""

from __future__ import annotations

import torch
from torch import Tensor


class DeadLatentTracker:
    """`since_fired[j]` = rows since latent j was last non-zero; dead when >= `threshold` rows.

    Counts are int64 so 10M-token thresholds and long runs cannot overflow; the tensor is checkpointed.
    """

    def __init__(self, d_sae: int, threshold: int, device: torch.device | str | None = None):
        self.threshold = int(threshold)
        # on the training device: the per-step update and the dead mask then need no host round trip
        self.since_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)

    def update(self, fired_F: Tensor, n_rows: int) -> None:
        self.since_fired += n_rows
        self.since_fired[fired_F.to(self.since_fired.device)] = 0

    @property
    def dead_mask(self) -> Tensor:
        return self.since_fired >= self.threshold

    @property
    def dead_fraction(self) -> float:
        return float(self.dead_mask.float().mean())

    def reset(self, latents_mask: Tensor) -> None:
        """Treat the given latents as freshly born (after resampling)."""
        self.since_fired[latents_mask] = 0
