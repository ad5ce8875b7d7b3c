"""Where `analyze real` reads activations from: a store (`StoreRows`) or a model + corpus
(`corpus_source.CorpusSource`), behind one small interface.

The streaming pass only remembers global row numbers of top examples (O(features x N) ints). To show
a context window with per-token activations those rows, and their neighbours, are read back (a store:
`ActivationStore.read_rows`, the store's own gather; a corpus: recomputed) and re-encoded with the
SAE, so the highlighted values match the top-example values exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

META_KEYS = ("doc_id", "position", "token_id")


@dataclass
class Rows:
    """Rows read back: `acts [n, d]` and every per-row metadata tensor `[n]` the source has."""

    acts: Tensor
    meta: dict[str, Tensor]

    def field(self, name: str) -> Tensor:
        """Metadata `name` as int64, or -1 everywhere when the source has no such field."""
        t = self.meta.get(name)
        return torch.full((self.acts.shape[0],), -1, dtype=torch.long) if t is None else t.long()

    @property
    def doc_id(self) -> Tensor:
        return self.field("doc_id")

    @property
    def position(self) -> Tensor:
        return self.field("position")

    @property
    def token_id(self) -> Tensor:
        return self.field("token_id")


class RowSource(Protocol):
    """What the real pass needs: sequential batches, random access to rows, facts about the rows."""

    manifest: dict[str, Any]

    def __len__(self) -> int: ...

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, dict[str, Tensor]]]: ...

    def read(self, rows: Tensor | list[int]) -> Rows: ...

    def meta_fields(self) -> list[str]: ...


class StoreRows:
    """An activation store as a row source (the store's own reader; no second shard parser)."""

    def __init__(self, folder: str | Path):
        from saekit.data.store import ActivationStore

        self.folder = Path(folder)
        self.store = ActivationStore.open(self.folder)
        self.manifest = self.store.manifest

    def __len__(self) -> int:
        return len(self.store)

    def meta_fields(self) -> list[str]:
        return self.store.meta_fields()

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        yield from self.store.iter_rows_with_meta(batch_size)

    def read(self, rows: Tensor | list[int]) -> Rows:
        """Rows at global indices `rows` (any order, duplicates allowed), in that order."""
        got = self.store.read_rows(torch.as_tensor(rows, dtype=torch.long).reshape(-1).numpy())
        acts = got.pop("acts")
        return Rows(acts, got)

    def tokens(self, doc_id: int, start: int = 0, stop: int | None = None) -> Tensor:
        return self.store.tokens(doc_id, start, stop)

    def has_tokens(self) -> bool:
        from saekit.data.store_writer import TOKENS_FILE

        return (self.folder / TOKENS_FILE).is_file()
