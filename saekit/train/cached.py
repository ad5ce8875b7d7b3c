"""An activation store held in memory for training: the same batches, without reading shard files per step.

A shuffled batch from `ActivationStore` is a gather over memory-mapped shard files: on the 2-core CPU it
measured ~0.3 s per 1024 rows under load, as long as a training step, so either the step waits for it or
the prefetch thread takes a core from the matmul. A store that fits a memory budget is read once (in its
stored dtype, e.g. 230 MB for the 200k-row bf16 demo store) and each batch becomes one `index_select`.
The order contract is the store's own (`numpy.random.default_rng(seed).permutation(n)`, batches cut from
`start_row`), so a cached run trains on exactly the rows, in exactly the order, an uncached one does, and
either may resume the other (checked by `tests/train/test_cached_source.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

_READ_ROWS = 65536


class CachedStore:
    """`ActivationStore`'s training interface (`d`, `len`, `iter_batches`, `sample`) held in memory."""

    def __init__(self, store):
        self.store = store
        self.manifest: dict[str, Any] = dict(getattr(store, "manifest", {}) or {})
        dtype = store.dtype
        parts = list(store.iter_batches(_READ_ROWS, shuffle=False, dtype=dtype))
        self.acts = torch.cat(parts) if parts else torch.empty(0, store.d, dtype=dtype)

    @property
    def d(self) -> int:
        return int(self.acts.shape[1])

    def __len__(self) -> int:
        return int(self.acts.shape[0])

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        start_row: int = 0,
        drop_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[Tensor]:
        n = len(self)
        if batch_size < 1 or not 0 <= start_row <= n:  # the store's own checks and messages
            yield from self.store.iter_batches(
                batch_size, shuffle=shuffle, seed=seed, start_row=start_row, drop_last=drop_last
            )
            return
        order = torch.from_numpy(np.random.default_rng(seed).permutation(n)) if shuffle else None
        for s in range(start_row, n, batch_size):
            e = min(s + batch_size, n)
            if drop_last and e - s < batch_size:
                return
            rows = self.acts[s:e] if order is None else self.acts.index_select(0, order[s:e])
            yield rows.to(dtype)

    def sample(self, n: int, seed: int = 0, *, dtype: torch.dtype = torch.float32) -> Tensor:
        return self.store.sample(n, seed, dtype=dtype)


def store_mb(source) -> float:
    """Size of a store's activations in its stored dtype, MB."""
    return len(source) * source.d * torch.empty(0, dtype=source.dtype).element_size() / 2**20


def maybe_cache(source, budget_mb: int):
    """`CachedStore(source)` for an `ActivationStore` of at most `budget_mb` MB; anything else unchanged."""
    from saekit.data.store import ActivationStore

    if budget_mb <= 0 or not isinstance(source, ActivationStore) or store_mb(source) > budget_mb:
        return source
    return CachedStore(source)
