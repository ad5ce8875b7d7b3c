"""A model + a corpus as a row source for `analyze real`: activations computed on the fly, no store.

Rows are laid out exactly as `saekit harvest` lays out a text store: each document is cut into
windows of `context_len` tokens (data/tokenize.py), the first `exclude_first` positions of every
window and special tokens are dropped (`keep_mask`), rows follow in document, window and token
order. So the analysis equals the one of a store of the same tokens (the harvest's outlier filter,
`--max-norm-ratio`, is the one thing not applied here).

Memory is constant in the corpus size: windows are tokenised lazily document by document and
forwarded `batch_size` windows at a time; only each unit's (window range, row range) is kept.
Random access (`read`, for context windows) recomputes just the units that hold the wanted rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from saekit.analysis.store_rows import Rows
from saekit.errors import CorpusError, ShapeError


@dataclass(frozen=True)
class CorpusConfig:
    """How a corpus becomes rows when `analyze` runs without a store."""

    corpus: str = ""
    """Corpus spec (a builtin like `shakespeare`, a .txt/.jsonl file or folder); empty: use --store."""
    context_len: int = 128
    """Tokens per window (as `saekit harvest --context-len`)."""
    tokens: int | None = None
    """Stop after this many rows (tokens); None: the whole corpus."""
    contexts_per_batch: int = 8
    """Windows per model forward."""
    prepend_bos: bool = False
    """Prepend the tokenizer's BOS to every window (as harvest --prepend-bos)."""
    exclude_first: int = 1
    """Positions dropped at the start of every window (attention sinks), as harvest."""
    exclude_special: bool = True
    """Drop special tokens, as harvest."""


def _forward(lm, hp, ids_BT: Tensor, mask_BT: Tensor) -> Tensor:
    from saekit.hooks import capture

    kwargs = {"input_ids": ids_BT.to(lm.model.device)}
    if lm.kind == "encoder":
        kwargs["attention_mask"] = mask_BT.long().to(lm.model.device)
    else:
        kwargs["use_cache"] = False  # causal + right padding: real tokens never see the padding
    with torch.inference_mode(), capture(lm.model, hp, stop_after_last=True) as cap:
        lm.model(**kwargs)
    x = cap.activations[str(hp)]
    if x.ndim != 3 or x.shape[:2] != ids_BT.shape:
        raise ShapeError(f"hook point {str(hp)!r} gave {list(x.shape)}; expected [batch, tokens, d]")
    return x.float().cpu()


class CorpusSource:
    """Rows of `lm` at `hook_point` over a corpus, in harvest order (see module docstring)."""

    kind = "corpus"

    def __init__(self, lm, hook_point: str, cfg: CorpusConfig):
        from saekit.data.corpus import load_corpus
        from saekit.hooks import HookPoint

        if not cfg.corpus:
            raise CorpusError("a corpus source needs --corpus (e.g. --corpus shakespeare or a .txt file)")
        self.lm, self.cfg = lm, cfg
        self.hp = HookPoint.parse(hook_point)
        self.docs = load_corpus(cfg.corpus)
        self.specials = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
        self.manifest = {
            "model": lm.name,
            "hook_point": str(self.hp),
            "corpus": cfg.corpus,
            "context_len": cfg.context_len,
            "prepend_bos": cfg.prepend_bos,
        }
        self._units: list[tuple[tuple[int, int], int, int]] = []  # ((doc, window), row start, row end)
        self._n_rows: int | None = None

    # -- windows ----------------------------------------------------------------------------------
    def _doc_windows(self, doc_id: int):
        from saekit.data.corpus import Document
        from saekit.data.tokenize import tokenize_corpus

        doc = self.docs[doc_id]
        try:
            b = tokenize_corpus(
                [Document(0, doc.text, doc.source)],
                self.lm.tokenizer,
                self.cfg.context_len,
                prepend_bos=self.cfg.prepend_bos,
                encoder=self.lm.kind == "encoder",
            )
        except CorpusError:  # a document too short for one window, as in a harvest
            return None
        doc_ids = torch.where(b.doc_id >= 0, doc_id, -1).to(torch.int32)
        return type(b)(b.token_id, doc_ids, b.position, b.mask, b.doc_tokens)

    def _windows(self, doc0: int = 0, win0: int = 0) -> Iterator[tuple[tuple[int, int], tuple]]:
        """((doc, window in doc), (token_id, doc_id, position, keep) `[T]` each), from (doc0, win0) on."""
        from saekit.data.tokenize import keep_mask

        for d in range(doc0, len(self.docs)):
            b = self._doc_windows(d)
            if b is None:
                continue
            keep = keep_mask(
                b, special_ids=self.specials, exclude_special=self.cfg.exclude_special,
                exclude_first=self.cfg.exclude_first,
            )  # fmt: skip
            for i in range(win0 if d == doc0 else 0, len(b)):
                yield (d, i), (b.token_id[i], b.doc_id[i], b.position[i], keep[i])

    def _unit_rows(self, wins: list) -> tuple[Tensor, dict[str, Tensor]]:
        tok, doc, pos, keep = (torch.stack(x) for x in zip(*wins))
        x = _forward(self.lm, self.hp, tok, doc >= 0)
        meta = {"doc_id": doc[keep].int(), "position": pos[keep].int(), "token_id": tok[keep].int()}
        return x[keep], meta

    # -- RowSource ------------------------------------------------------------------------------
    def meta_fields(self) -> list[str]:
        return ["doc_id", "position", "token_id"]

    def __len__(self) -> int:
        return self._n_rows if self._n_rows is not None else (self.cfg.tokens or 0)

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        """Sequential `(acts, meta)` units of `contexts_per_batch` windows (`batch_size` is unused: a
        unit is what one forward computes). Records the row layout for `read`."""
        self._units, done, limit = [], 0, self.cfg.tokens
        wins, first = [], (0, 0)
        for where, item in self._windows():
            if not wins:
                first = where
            wins.append(item)
            if len(wins) == self.cfg.contexts_per_batch:
                done = yield from self._emit(wins, first, done, limit)
                wins = []
                if limit is not None and done >= limit:
                    break
        if wins and (limit is None or done < limit):
            done = yield from self._emit(wins, first, done, limit)
        self._n_rows = done

    def _emit(self, wins, first, done, limit):
        acts, meta = self._unit_rows(wins)
        n = acts.shape[0] if limit is None else min(acts.shape[0], limit - done)
        self._units.append((first, done, done + n))
        if n:
            yield acts[:n], {k: v[:n] for k, v in meta.items()}
        return done + n

    def read(self, rows: Tensor | list[int]) -> Rows:
        """Rows at global indices (after a full `batches` pass), recomputing only the units needed."""
        import bisect

        rows_t = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        if self._n_rows is None:
            raise CorpusError("CorpusSource.read needs one full pass of batches() first")
        starts = [u[1] for u in self._units]
        by_unit: dict[int, list[int]] = {}
        for i, r in enumerate(rows_t.tolist()):
            if not 0 <= r < self._n_rows:
                raise CorpusError(f"row {r} is outside this corpus source's {self._n_rows} rows")
            by_unit.setdefault(bisect.bisect_right(starts, r) - 1, []).append(i)
        acts = None
        meta = {k: torch.zeros(rows_t.numel(), dtype=torch.int32) for k in self.meta_fields()}
        for u, where in by_unit.items():
            first, start, end = self._units[u]
            wins = [w for _, (_, w) in zip(range(self.cfg.contexts_per_batch), self._windows(*first))]
            a, m = self._unit_rows(wins)
            local = rows_t[where] - start
            if acts is None:
                acts = torch.zeros(rows_t.numel(), a.shape[1])
            acts[where] = a[local]
            for k in meta:
                meta[k][where] = m[k][local]
        return Rows(acts if acts is not None else torch.zeros(0, 0), meta)

    def tokens(self, doc_id: int, start: int = 0, stop: int | None = None) -> Tensor:
        """Token ids of document `doc_id` in `[start, stop)` (for real starts of the maximiser)."""
        ids = self.lm.tokenizer(self.docs[doc_id].text, add_special_tokens=False, verbose=False)["input_ids"]
        return torch.tensor(ids[max(0, start) : stop], dtype=torch.int64)

    def has_tokens(self) -> bool:
        return True
