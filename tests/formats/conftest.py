"""Shared helpers for the foreign-format tests: seeded random tensors and activations."""

from __future__ import annotations

import torch

torch.set_num_threads(2)

D_IN, D_SAE, BATCH = 8, 32, 16
#: float32 weights; folds run in float64 and are cast once, so differences are a few float32 ulps.
ATOL = 1e-5


def rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def acts(seed: int = 100, n: int = BATCH) -> torch.Tensor:
    return rand(n, D_IN, seed=seed, scale=2.0)


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    err = (a - b).abs().max().item()
    assert err <= ATOL, f"{what}: max abs error {err:.3g} > {ATOL}"
