"""Documents -> fixed-length contexts, keeping each token's document id and position.

Each document is cut into consecutive windows of `context_len` tokens (no packing across documents,
so a context never attends to another document's text); a final window shorter than `min_context`
is dropped, shorter windows are right-padded (harmless for causal models, masked for encoders).
`position` is the token's index in its *document*; the position inside the context is
`position % body_len`. Tokens the tokenizer adds (BOS, or [CLS]/[SEP] for encoders) get position -1.

SmolLM2's tokenizer does not add its BOS `<|im_start|>` and harvest does not prepend it by default
(`prepend_bos=True` to change): the first context position is an attention sink with a huge norm
(~24,000 vs a median ~170 at layer 15) either way, and it is excluded from stores by default.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from saekit.data.corpus import Document
from saekit.errors import CorpusError


class TokenBatch(NamedTuple):
    """Tokenised contexts; all tensors are `[n_contexts, context_len]`."""

    token_id: torch.Tensor
    """int64 token ids (padding = pad id)."""
    doc_id: torch.Tensor
    """int32 document id of each token (-1 on padding)."""
    position: torch.Tensor
    """int32 index of the token in its document (-1 on padding and on added special tokens)."""
    mask: torch.Tensor
    """bool, True on real (non-padding) tokens."""
    doc_tokens: list[list[int]]
    """The full token list of every tokenised document (index = doc id), for showing contexts later."""

    def __len__(self) -> int:
        return self.token_id.shape[0]


def _special_ids(tokenizer: Any, *, prepend_bos: bool, encoder: bool) -> tuple[list[int], list[int]]:
    head: list[int] = []
    tail: list[int] = []
    if encoder:
        if getattr(tokenizer, "cls_token_id", None) is not None:
            head.append(tokenizer.cls_token_id)
        if getattr(tokenizer, "sep_token_id", None) is not None:
            tail.append(tokenizer.sep_token_id)
    elif prepend_bos:
        if getattr(tokenizer, "bos_token_id", None) is None:
            raise CorpusError(
                f"prepend_bos=True but the tokenizer {type(tokenizer).__name__} has no BOS token"
            )
        head.append(tokenizer.bos_token_id)
    return head, tail


def tokenize_corpus(
    docs: list[Document],
    tokenizer: Any,
    context_len: int,
    *,
    max_tokens: int | None = None,
    prepend_bos: bool = False,
    encoder: bool = False,
    min_context: int = 8,
) -> TokenBatch:
    """Tokenise `docs` into contexts of exactly `context_len` tokens (see module docstring).

    Stops after the document that brings the real token count to `max_tokens` (None = all).
    """
    head, tail = _special_ids(tokenizer, prepend_bos=prepend_bos, encoder=encoder)
    body = context_len - len(head) - len(tail)
    if body < 1:
        raise CorpusError(
            f"context_len={context_len} leaves no room for text after special tokens {head + tail}"
        )
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = 0 if pad is None else pad
    rows_tok: list[list[int]] = []
    rows_doc: list[int] = []
    rows_start: list[int] = []
    doc_tokens: list[list[int]] = []
    total = 0
    for expected_id, doc in enumerate(docs):
        if doc.id != expected_id:
            raise CorpusError(
                f"documents must be numbered 0..n-1 in order; found id {doc.id} at index {expected_id}"
            )
        ids = tokenizer(doc.text, add_special_tokens=False, verbose=False)["input_ids"]
        doc_tokens.append(list(ids))
        for start in range(0, len(ids), body):
            chunk = ids[start : start + body]
            if len(chunk) < min(min_context, body):
                continue
            rows_tok.append(head + chunk + tail)
            rows_doc.append(doc.id)
            rows_start.append(start)
            total += len(chunk)
        if max_tokens is not None and total >= max_tokens:
            break
    if not rows_tok:
        raise CorpusError(f"the corpus produced no context of at least {min_context} tokens")
    n = len(rows_tok)
    token_id = torch.full((n, context_len), pad, dtype=torch.int64)
    doc_id = torch.full((n, context_len), -1, dtype=torch.int32)
    position = torch.full((n, context_len), -1, dtype=torch.int32)
    mask = torch.zeros((n, context_len), dtype=torch.bool)
    for i, (toks, d, start) in enumerate(zip(rows_tok, rows_doc, rows_start)):
        length = len(toks)
        n_body = length - len(head) - len(tail)
        token_id[i, :length] = torch.tensor(toks)
        doc_id[i, :length] = d
        mask[i, :length] = True
        position[i, len(head) : len(head) + n_body] = torch.arange(start, start + n_body, dtype=torch.int32)
    return TokenBatch(token_id, doc_id, position, mask, doc_tokens)


def keep_mask(
    batch: TokenBatch,
    *,
    special_ids: list[int] | set[int],
    exclude_special: bool = True,
    exclude_first: int = 1,
) -> torch.Tensor:
    """Which tokens become store rows: real tokens, minus special tokens and the first
    `exclude_first` positions of every context (attention sinks with outlier norms). `[n, T]` bool."""
    keep = batch.mask.clone()
    if exclude_first > 0:
        keep[:, :exclude_first] = False
    if exclude_special:
        specials = torch.tensor(sorted(set(special_ids)), dtype=torch.int64)
        keep &= ~torch.isin(batch.token_id, specials)
        keep &= batch.position >= 0  # added BOS/CLS/SEP
    return keep
