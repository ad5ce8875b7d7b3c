"""Shared pieces of the trainer tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

#: CPU always; CUDA when present (marked `cuda`, skipped without a GPU)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")],
    ),
]


def correlated_rows(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g) + 1.0


def write_store(folder: Path, acts: torch.Tensor, shard_rows: int = 300, hook: str = "model.layers.1"):
    """A complete activation store holding `acts` (several shards, so gathers cross shard edges)."""
    from saekit.data import StoreWriter

    n = acts.shape[0]
    w = StoreWriter(folder, {"model": "tiny", "hook_point": hook, "d": acts.shape[1]}, shard_rows=shard_rows)
    meta = {"doc_id": torch.arange(n) // 64, "position": torch.arange(n) % 64, "token_id": torch.zeros(n)}
    w.add(acts, {k: v.to(torch.int64) for k, v in meta.items()})
    w.close()
    return folder
