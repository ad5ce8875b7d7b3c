"""A paired store's rows as one tensor each, so that everything that moves rows moves pairs.

`saekit harvest --paired` stores a module's input (`acts [n, d_in]`) and output (`target [n, d_out]`) side
by side in every shard. A transcoder trains on both; the trainer's data path (seeded order, resume from a
row offset, read-ahead thread, in-memory cache, per-rank slices, pinned copies) handles single tensors, so
`PairedRows` serves each row as its input followed by its target, `xy [B, d_in + d_out]`, in exactly the
order the store serves `acts` for the same seed, and `split_pair` takes a batch apart again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from saekit.data.manifest import TARGET
from saekit.errors import StoreError


class Pair(NamedTuple):
    """One batch of a paired store: a module's input rows and the output rows it produced."""

    x: Tensor
    """Inputs `[batch, d_in]`."""
    y: Tensor
    """Targets `[batch, d_out]`."""


def split_pair(xy: Tensor, d_in: int) -> Pair:
    """`xy [batch, d_in + d_out]` (a `PairedRows` batch) -> `Pair(x [batch, d_in], y [batch, d_out])`."""
    return Pair(xy[..., :d_in], xy[..., d_in:])


class PairedRows:
    """A paired `ActivationStore` read as rows `[input | target]`; see the module docstring."""

    def __init__(self, store):
        if not getattr(store, "paired", False):
            raise StoreError(
                f"{getattr(store, 'folder', store)} is not a paired store: it holds one tensor per row, "
                "not a module's input and output. Harvest one with `saekit harvest --paired --hook-point "
                "MODULE` (e.g. model.layers.8.mlp)"
            )
        self.store = store
        self.d_in = int(store.d)
        self.d_out = int(store.d_out)
        self.manifest = dict(store.manifest)
        self.folder = store.folder

    @property
    def d(self) -> int:
        """Width of a served row: d_in + d_out."""
        return self.d_in + self.d_out

    @property
    def dtype(self) -> torch.dtype:
        return self.store.dtype

    def __len__(self) -> int:
        return len(self.store)

    def _rows(self, idx: np.ndarray, dtype: torch.dtype) -> Tensor:
        got = self.store.read_rows(idx, ["acts", TARGET], dtype=dtype)
        return torch.cat([got["acts"], got[TARGET]], dim=1)

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
        """`[B, d_in + d_out]` batches in the store's own order for `seed` (`ActivationStore.batch_rows`)."""
        for rows in self.store.batch_rows(batch_size, shuffle=shuffle, seed=seed, start_row=start_row,
                                          drop_last=drop_last):  # fmt: skip
            idx = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
            yield self._rows(idx, dtype)

    def sample(self, n: int, seed: int = 0, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """`n` distinct random rows `[n, d_in + d_out]` (the rows `store.sample(n, seed)` returns)."""
        return self._rows(self.store.sample_rows(n, seed), dtype)
