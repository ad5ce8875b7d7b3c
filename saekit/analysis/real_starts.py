"""Real contexts as starts of the feature maximiser: the tokens the model saw up to a top example.

A top example's activation depends on every earlier token of its context window (harvest cuts each
document into windows of `context_len` tokens, see data/tokenize.py), so the exact start is the
document's tokens from the window's first token to the example's token. With the store's token
table (or a corpus source) that window is rebuilt exactly; otherwise the analysis document's
`context_before` tokens are used, which is shorter and may activate the feature less.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

TokensFn = Callable[[int, int, int], Tensor]
"""`tokens(doc_id, start, stop)`: a document's token ids in `[start, stop)` (ActivationStore.tokens)."""


def window_start(position: int, context_len: int, prepend_bos: bool = False) -> int:
    """First document position of the harvest window that holds `position`."""
    body = max(1, context_len - (1 if prepend_bos else 0))
    return (position // body) * body


def real_starts(
    feat: dict,
    n: int,
    *,
    tokens: TokensFn | None = None,
    context_len: int | None = None,
    prepend_bos: bool = False,
    bos_id: int | None = None,
) -> list[list[int]]:
    """Up to `n` token sequences ending at the feature's best real examples, best first."""
    out: list[list[int]] = []
    for ex in feat.get("top_examples", [])[:n]:
        pos, doc = int(ex.get("position", -1)), int(ex.get("doc_id", -1))
        if tokens is not None and context_len and pos >= 0 and doc >= 0:
            ids = tokens(doc, window_start(pos, context_len, prepend_bos), pos + 1).tolist()
            if prepend_bos and bos_id is not None:
                ids = [bos_id, *ids]
        else:
            cx = ex["context"]
            ids = list(cx["token_ids"][: cx["focus"] + 1])
        if ids:
            out.append(ids)
    return out
