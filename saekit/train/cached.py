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

import numpy as np
import torch
from torch import Tensor

from saekit.train.source import TensorSource

_READ_ROWS = 65536


class CachedStore(TensorSource):
    """`ActivationStore`'s training interface held in memory: `TensorSource`'s batching over the store's
    rows, in the store's order (so cached and uncached runs see identical batches)."""

    def __init__(self, store):
        dtype = store.dtype
        parts = list(store.iter_batches(_READ_ROWS, shuffle=False, dtype=dtype))
        super().__init__(torch.cat(parts) if parts else torch.empty(0, store.d, dtype=dtype))
        self.store = store
        self.manifest = dict(getattr(store, "manifest", {}) or {})

    def _order(self, shuffle: bool, seed: int) -> Tensor:
        if not shuffle:
            return torch.arange(len(self))
        return torch.from_numpy(np.random.default_rng(seed).permutation(len(self)))

    def iter_batches(self, batch_size: int, *, start_row: int = 0, **kw) -> Iterator[Tensor]:
        if batch_size < 1 or not 0 <= start_row <= len(self):  # the store's own checks and messages
            kw.pop("dtype", None)
            return self.store.iter_batches(batch_size, start_row=start_row, **kw)
        return super().iter_batches(batch_size, start_row=start_row, **kw)

    def sample(self, n: int, seed: int = 0, *, dtype: torch.dtype = torch.float32) -> Tensor:
        return self.store.sample(n, seed, dtype=dtype)


def store_mb(source) -> float:
    """Size of a store's activations in its stored dtype, MB."""
    return len(source) * source.d * torch.empty(0, dtype=source.dtype).element_size() / 2**20


def maybe_cache(source, budget_mb: int):
    """`CachedStore(source)` for an `ActivationStore` (or a paired store's `PairedRows`) of at most
    `budget_mb` MB; anything else unchanged."""
    from saekit.data.paired import PairedRows
    from saekit.data.store import ActivationStore

    cacheable = isinstance(source, (ActivationStore, PairedRows))
    if budget_mb <= 0 or not cacheable or store_mb(source) > budget_mb:
        return source
    return CachedStore(source)
