"""`ActivationStore`: read a sharded activation store, memory-mapped, shuffled across shards.

Shuffled reading draws one permutation of all rows (numpy PCG64, seeded) and gathers each batch with
one sorted fancy-index per touched shard, so it is deterministic per seed, resumable from any row
offset, and never loops over rows in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saekit.data.checksum import verify_store
from saekit.data.manifest import TARGET, is_paired, read_manifest
from saekit.data.shard_file import ShardView
from saekit.data.store_writer import TOKENS_FILE, StoreWriter
from saekit.errors import StoreError

__all__ = ["ActivationStore", "StoreWriter", "verify_store"]


class ActivationStore:
    """An opened store; see docs/INTERFACES.md (Data) for the contract."""

    def __init__(self, folder: Path, manifest: dict[str, Any], shards: list[ShardView]):
        self.folder = folder
        self.manifest = manifest
        self.shards = shards
        counts = np.array([int(s["count"]) for s in manifest["shards"]], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._tokens: dict[str, torch.Tensor] | None = None

    @classmethod
    def open(cls, folder: str | Path, *, allow_incomplete: bool = False) -> ActivationStore:
        """Open and validate a store (manifest, every shard's header, shapes and byte sizes)."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if not manifest.get("complete", False) and not allow_incomplete:
            raise StoreError(
                f"store {folder} is incomplete ({manifest['count']} rows so far): its harvest was "
                "interrupted. "
                f"Re-run the same `saekit harvest ... --out {folder}` to resume, or open with "
                "allow_incomplete=True"
            )
        fix = (
            f"Re-harvest the damaged shards: rerun the same `saekit harvest ... --out {folder}` command "
            "with --repair (or --overwrite to start again)"
        )
        shards = []
        first_row = 0
        for entry in manifest["shards"]:
            path = folder / entry["file"]
            if path.is_file() and "bytes" in entry and path.stat().st_size != entry["bytes"]:
                raise StoreError(
                    f"store shard {path} has {path.stat().st_size} bytes, manifest says {entry['bytes']}: "
                    f"truncated or replaced. {fix}"
                )
            shards.append(
                ShardView(
                    path,
                    int(entry["count"]),
                    int(manifest["d"]),
                    _st_dtype(manifest["dtype"]),
                    fix,
                    entry=entry,
                    first_row=first_row,
                    target_d=int(manifest["d_out"]) if is_paired(manifest) else None,
                )
            )
            first_row += int(entry["count"])
        return cls(folder, manifest, shards)

    # -- basic facts -----------------------------------------------------------------------------
    @property
    def d(self) -> int:
        return int(self.manifest["d"])

    @property
    def dtype(self) -> torch.dtype:
        """Storage dtype of the activations."""
        return getattr(torch, self.manifest["dtype"])

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def paired(self) -> bool:
        """True when every row also holds the hooked module's output (`saekit harvest --paired`)."""
        return is_paired(self.manifest)

    @property
    def d_out(self) -> int | None:
        """Width of a paired store's targets; None for an ordinary store."""
        return int(self.manifest["d_out"]) if self.paired else None

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"ActivationStore({str(self.folder)!r}, rows={len(self)}, d={self.d}, dtype={m['dtype']}, "
            f"model={m.get('model')!r}, hook_point={m.get('hook_point')!r})"
        )

    # -- reading -----------------------------------------------------------------------------------
    def _gather(self, idx: np.ndarray, name: str = "acts") -> torch.Tensor:
        """Rows `idx` (global row numbers, any order) of tensor `name`, in that order.

        Reads each touched shard once with sorted indices (good locality), then undoes the sort with
        one index_select (much faster than scattering into an output tensor).
        """
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        cuts = np.searchsorted(sorted_idx, self._starts)
        parts = []
        for s, shard in enumerate(self.shards):
            a, b = cuts[s], cuts[s + 1]
            if a == b:
                continue
            local = sorted_idx[a:b] - self._starts[s]
            contiguous = local[-1] - local[0] + 1 == b - a
            parts.append(shard.rows(name, slice(int(local[0]), int(local[-1]) + 1) if contiguous else local))
        if not parts:
            return self._range(0, 0, name)
        rows = parts[0] if len(parts) == 1 else torch.cat(parts)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return rows.index_select(0, torch.from_numpy(inverse))

    def _range(self, start: int, stop: int, name: str = "acts") -> torch.Tensor:
        """Rows `[start, stop)` in storage order: contiguous slices of the shards they span."""
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        parts = []
        s = max(first, 0)
        while start < stop and s < len(self.shards):
            lo, hi = start - self._starts[s], min(stop, self._starts[s + 1]) - self._starts[s]
            if hi > lo:
                parts.append(self.shards[s].rows(name, slice(int(lo), int(hi))))
                start = int(self._starts[s] + hi)
            s += 1
        if not parts:
            return self.shards[0].rows(name, slice(0, 0)) if self.shards else torch.empty(0, self.d)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        start_row: int = 0,
        drop_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[torch.Tensor]:
        """Yield `[B, d]` batches in a fixed order per seed; `start_row` = rows already consumed.

        One pass over the store; call again (e.g. with seed + epoch) for another epoch.
        """
        for rows in self.batch_rows(batch_size, shuffle=shuffle, seed=seed, start_row=start_row,
                                    drop_last=drop_last):  # fmt: skip
            x = self._range(rows.start, rows.stop) if isinstance(rows, slice) else self._gather(rows)
            yield x.to(dtype)

    def batch_rows(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        start_row: int = 0,
        drop_last: bool = False,
    ) -> Iterator[np.ndarray | slice]:
        """The rows of each batch `iter_batches` yields: index arrays (shuffled), or slices (in order).
        One definition of the order, so every reader of this store (paired stores too) sees the same."""
        n = len(self)
        if batch_size < 1:
            raise StoreError(f"batch_size must be >= 1, found {batch_size}")
        if not 0 <= start_row <= n:
            raise StoreError(f"start_row {start_row} is outside the store's {n} rows ({self.folder})")
        perm = np.random.default_rng(seed).permutation(n) if shuffle else None
        for s in range(start_row, n, batch_size):
            e = min(s + batch_size, n)
            if drop_last and e - s < batch_size:
                return
            yield perm[s:e] if perm is not None else slice(s, e)

    def sample_rows(self, n: int, seed: int = 0) -> np.ndarray:
        """The indices of `sample(n, seed)`: `n` distinct random rows (all if the store has fewer)."""
        return np.random.default_rng(seed).permutation(len(self))[: min(n, len(self))]

    def read_rows(
        self, rows, names: list[str] | None = None, *, dtype: torch.dtype = torch.float32
    ) -> dict[str, torch.Tensor]:
        """Global rows `rows` (any order, duplicates allowed), in that order: `{"acts": [n, d], meta: [n]}`.

        Random access for analysis (top examples and their context windows); `names` picks tensors
        (default: acts and every meta field; a paired store's `target` by name). Acts and targets come
        back in `dtype`, meta in their stored dtype.
        """
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise StoreError(
                f"row index out of range for store {self.folder} with {len(self)} rows "
                f"(asked for {int(idx.min())}..{int(idx.max())})"
            )
        out = {}
        for name in names if names is not None else ["acts", *self.meta_fields()]:
            t = self._gather(idx, name) if idx.size else self._range(0, 0, name)
            out[name] = t.to(dtype) if name in ("acts", TARGET) else t
        return out

    def meta_fields(self) -> list[str]:
        """Names of the per-row metadata (`doc_id`, `position`, ...): every 1-d tensor of the shards."""
        return [k for k in self.shards[0].arrays if k not in ("acts", TARGET)] if self.shards else []

    def iter_rows_with_meta(
        self, batch_size: int, *, dtype: torch.dtype = torch.float32
    ) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """Sequential `(acts [B, d], {doc_id, position, token_id, ...: [B]})` in storage order."""
        for s in range(0, len(self), batch_size):
            e = min(s + batch_size, len(self))
            yield self._range(s, e).to(dtype), {k: self._range(s, e, k) for k in self.meta_fields()}

    def sample(self, n: int, seed: int = 0, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """`n` distinct random rows `[n, d]` (all rows if the store has fewer)."""
        return self._gather(self.sample_rows(n, seed)).to(dtype)

    def tokens(self, doc_id: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Token ids of document `doc_id`, positions `[start, stop)` (clipped), as int64."""
        if self._tokens is None:
            path = self.folder / TOKENS_FILE
            if not path.is_file():
                raise StoreError(
                    f"store {self.folder} has no {TOKENS_FILE}: it was not written by a text harvest"
                )
            from safetensors.torch import load_file

            self._tokens = load_file(str(path))
        offsets = self._tokens["doc_offsets"]
        if not 0 <= doc_id < len(offsets) - 1:
            raise StoreError(f"doc_id {doc_id} is outside this store's {len(offsets) - 1} documents")
        a, b = int(offsets[doc_id]), int(offsets[doc_id + 1])
        stop = b - a if stop is None else stop
        return self._tokens["doc_tokens"][a + max(0, start) : a + min(b - a, stop)].to(torch.int64)

    def verify(self) -> dict[str, Any]:
        """Hash every shard and refuse NaN/inf rows (opening only checks structure); see verify_store."""
        return verify_store(self.folder)


def _st_dtype(name: str) -> str:
    return {"float32": "F32", "bfloat16": "BF16"}[name]
