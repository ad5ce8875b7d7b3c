"""Random access to rows of an activation store, straight from its documented shard files.

The streaming pass only remembers global row numbers of top examples (O(features x N) ints). To show
a context window with per-token activations we read those rows, and their neighbours, back from the
memory-mapped safetensors shards (`acts`, `doc_id`, `position`, `token_id`; see docs/INTERFACES.md)
and re-encode them with the SAE. The stored activations are the ones the pass saw, so the highlighted
values match the top-example values exactly, and no model is needed.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from saekit.errors import StoreError

META_KEYS = ("doc_id", "position", "token_id")


class Rows(NamedTuple):
    """Rows read back from a store: `acts [n, d]` and int64 metadata `[n]` each."""

    acts: Tensor
    doc_id: Tensor
    position: Tensor
    token_id: Tensor


class StoreRows:
    """Read arbitrary global rows (in the store's sequential order) from `folder`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        mpath = self.folder / "manifest.json"
        if not mpath.is_file():
            raise StoreError(
                f"no manifest.json in {self.folder}: not an activation store (run `saekit harvest`)"
            )
        try:
            self.manifest = json.loads(mpath.read_text(encoding="utf-8"))
            shards = self.manifest["shards"]
            self.files = [self.folder / s["file"] for s in shards]
            counts = [int(s["count"]) for s in shards]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise StoreError(f"{mpath}: unreadable manifest ({exc}); re-run the harvest") from None
        self.starts = [0]
        for c in counts:
            self.starts.append(self.starts[-1] + c)
        self._handles: dict[int, object] = {}

    def __len__(self) -> int:
        return self.starts[-1]

    def _open(self, s: int):
        if s not in self._handles:
            from safetensors import safe_open

            if not self.files[s].is_file():
                raise StoreError(f"store shard {self.files[s]} is missing; the store is incomplete")
            self._handles[s] = safe_open(str(self.files[s]), framework="pt")
        return self._handles[s]

    def read(self, rows: Tensor | list[int]) -> Rows:
        """Rows at global indices `rows` (any order, duplicates allowed), in that order."""
        rows_t = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        n = len(self)
        if rows_t.numel() and (int(rows_t.min()) < 0 or int(rows_t.max()) >= n):
            raise StoreError(f"row index out of range for store {self.folder} with {n} rows")
        order = torch.argsort(rows_t)
        srt = rows_t[order]
        parts: dict[str, list[Tensor]] = {k: [] for k in ("acts", *META_KEYS)}
        i = 0
        while i < srt.numel():
            s = bisect.bisect_right(self.starts, int(srt[i])) - 1
            j = int(torch.searchsorted(srt, self.starts[s + 1]))
            local = srt[i:j] - self.starts[s]
            lo, hi = int(local[0]), int(local[-1]) + 1
            fh = self._open(s)
            for k, chunks in parts.items():
                chunks.append(fh.get_slice(k)[lo:hi][local - lo])
            i = j
        out = {k: (torch.cat(v) if v else torch.empty(0)) for k, v in parts.items()}
        inv = torch.empty_like(order)
        inv[order] = torch.arange(order.numel())
        return Rows(out["acts"][inv], *(out[k][inv].long() for k in META_KEYS))
