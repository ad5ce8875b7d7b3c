"""Learning-rate and sparsity-coefficient schedules as pure functions of the step (nothing to checkpoint)."""

from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay: str, decay_start: float) -> float:
    """Multiplier of the peak LR at `step` (0-based): linear warm-up, flat, then linear/cosine decay to 0."""
    warmup = min(warmup_steps, max(total_steps // 10, 0))
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    start = int(decay_start * total_steps)
    if decay == "none" or step < start or total_steps <= start:
        return 1.0
    frac = (step - start) / max(total_steps - start, 1)
    if decay == "linear":
        return max(0.0, 1.0 - frac)
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ValueError(f"unknown lr decay {decay!r}; choose none, linear or cosine")


def sparsity_scale(step: int, total_steps: int, warmup_frac: float) -> float:
    """Sparsity-coefficient multiplier: linear from ~0 to 1 over the first `warmup_frac` of the run."""
    warm = int(warmup_frac * total_steps)
    if warm <= 0:
        return 1.0
    return min(1.0, (step + 1) / warm)
