"""Where training rows come from: any object with `d`, `__len__`, `iter_batches(...)`, `sample(n, seed)`.

The activation store (`saekit.data.store.ActivationStore`) satisfies this protocol; `TensorSource` is the
in-memory version for tests, on-the-fly activations and small experiments. The trainer only relies on
the protocol, so both are interchangeable and resume identically.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from saekit.errors import ShapeError, StoreError


@runtime_checkable
class ActivationSource(Protocol):
    """Rows `[n, d]` served in a seeded shuffled order, resumable from a row offset."""

    @property
    def d(self) -> int: ...

    def __len__(self) -> int: ...

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        start_row: int = 0,
        drop_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[Tensor]: ...

    def sample(self, n: int, seed: int) -> Tensor: ...


class TensorSource:
    """An in-memory activation source over a `[n, d]` tensor: seeded shuffled batches, resumable from a row
    offset. Its order comes from `_order` (a torch permutation); `saekit.train.cached.CachedStore`
    overrides it with the store's own order."""

    def __init__(self, acts: Tensor, manifest: dict[str, Any] | None = None):
        if acts.ndim != 2:
            raise ShapeError(f"TensorSource needs activations [n, d], got shape {tuple(acts.shape)}")
        self.acts = acts
        self.manifest = dict(manifest or {})
        self.manifest.setdefault("d", acts.shape[1])
        self.manifest.setdefault("count", acts.shape[0])

    @property
    def d(self) -> int:
        return int(self.acts.shape[1])

    def __len__(self) -> int:
        return int(self.acts.shape[0])

    def _order(self, shuffle: bool, seed: int) -> Tensor:
        if not shuffle:
            return torch.arange(len(self))
        g = torch.Generator().manual_seed(seed)
        return torch.randperm(len(self), generator=g)

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
        order = self._order(shuffle, seed)
        n = len(self)
        for lo in range(start_row, n, batch_size):
            hi = min(lo + batch_size, n)
            if drop_last and hi - lo < batch_size:
                return
            yield self.acts.index_select(0, order[lo:hi]).to(dtype)

    def sample(self, n: int, seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[: min(n, len(self))]
        return self.acts[idx].float()


class PairedTensorSource(TensorSource):
    """In-memory pairs `x [n, d_in]`, `y [n, d_out]` for training a transcoder, served as a paired store's
    `saekit.data.paired.PairedRows` serves them: one row `[x | y]` each (`split_pair` takes them apart)."""

    def __init__(self, x: Tensor, y: Tensor, manifest: dict[str, Any] | None = None):
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ShapeError(
                f"PairedTensorSource needs inputs [n, d_in] and targets [n, d_out] with the same n, got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        self.d_in, self.d_out = int(x.shape[1]), int(y.shape[1])
        fields = {"d": self.d_in, "d_out": self.d_out, "paired": True, **(manifest or {})}
        super().__init__(torch.cat([x, y.to(x.dtype)], dim=1), fields)


def open_source(path: str | Path) -> ActivationSource:
    """Open an activation store folder, with a clear error when it is not one."""
    path = Path(path)
    if not path.exists():
        raise StoreError(
            f"no activation store at {path}: the folder does not exist; run `saekit harvest` first"
        )
    if not (path / "manifest.json").exists():
        raise StoreError(f"{path} has no manifest.json: not an activation store (made by `saekit harvest`)")
    from saekit.data.store import ActivationStore

    return ActivationStore.open(path)
