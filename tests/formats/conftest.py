"""Shared helpers for the foreign-format tests: seeded random tensors and activations."""

from __future__ import annotations

import torch
from numerics import assert_close_scaled

torch.set_num_threads(2)

D_IN, D_SAE, BATCH = 8, 32, 16


def rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def acts(seed: int = 100, n: int = BATCH) -> torch.Tensor:
    return rand(n, D_IN, seed=seed, scale=2.0)


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Equal up to float32 summation-order rounding over a D_SAE-long decode (folds run in float64 and
    are cast once; the BLAS kernel, and so the rounding, differs between CPUs)."""
    assert_close_scaled(a, b, terms=D_SAE, dtype=torch.float32, msg=what)
