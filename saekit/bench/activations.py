"""The model passes the bench needs, none of which depends on an SAE: computed once per bench run.

- `text_rows`: the hook-point activations of every token of a list of texts (probing), minus the first
  position and norm outliers (the attention sinks harvest also drops), with each row's text index.
- `vocabulary_words` + `token_rows`: single-token words of the model's vocabulary (a space and a
  lowercase word) and the activation at the word when fed after a short fixed prefix (absorption).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from saekit.errors import CorpusError


class TextRows(NamedTuple):
    """Kept token activations of `n_texts` texts."""

    rows: Tensor
    """`[rows, d]` float32 activations at the hook point."""
    text: Tensor
    """`[rows]` int64 index of the text each row belongs to."""
    n_texts: int


def text_rows(
    lm,
    hook_point,
    texts: list[str],
    *,
    max_tokens: int,
    batch_size: int = 32,
    exclude_first: int = 1,
    max_norm_ratio: float = 50.0,
    progress=None,
) -> TextRows:
    """Activations of the tokens of each text (cut to `max_tokens` tokens, no BOS, as harvest tokenises),
    without its first `exclude_first` positions and rows over `max_norm_ratio` x the batch's median norm."""
    from saekit.models.activations import lm_activations, norm_outliers

    tok = lm.tokenizer
    ids = [list(tok(t, add_special_tokens=False, verbose=False)["input_ids"])[:max_tokens] for t in texts]
    pad = getattr(tok, "pad_token_id", None)
    pad = 0 if pad is None else pad
    order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths share a batch
    key = str(hook_point)
    rows, owner = [], []
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        width = max(1, max(len(ids[i]) for i in idx))
        batch = torch.full((len(idx), width), pad, dtype=torch.int64)
        mask = torch.zeros((len(idx), width), dtype=torch.bool)
        for r, i in enumerate(idx):
            batch[r, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.int64)
            mask[r, : len(ids[i])] = True
        x = lm_activations(lm, [hook_point], batch, mask)[key].float().cpu()
        keep = mask.clone()
        keep[:, :exclude_first] = False
        keep &= ~norm_outliers(x, keep, max_norm_ratio)
        rows.append(x[keep])
        owner.append(torch.as_tensor(idx, dtype=torch.int64)[:, None].expand_as(keep)[keep])
        if progress is not None:
            progress.update(len(idx))
    return TextRows(torch.cat(rows), torch.cat(owner), len(texts))


def mean_pool(values_ND: Tensor, index_N: Tensor, n: int) -> Tensor:
    """`[n, F]` mean of the rows of each index (zeros where an index has no row)."""
    out = torch.zeros(n, values_ND.shape[1], dtype=torch.float64)
    out.index_add_(0, index_N, values_ND.double())
    count = torch.bincount(index_N, minlength=n).clamp_min(1)
    return (out / count[:, None]).float()


class Words(NamedTuple):
    token_id: Tensor
    """`[n]` int64 token ids."""
    letter: Tensor
    """`[n]` int64 first letter, 0 = a ... 25 = z."""
    text: list[str]


_WORD = re.compile(r" ([a-z]+)")


def vocabulary_words(
    tokenizer, vocab_size: int, *, min_letters: int = 2, max_words: int = 0, seed: int = 0
) -> Words:
    """Tokens that decode to a space and `min_letters`+ lowercase ASCII letters; `max_words` > 0 keeps a
    seeded random subset of that many."""
    found = []
    for i in range(vocab_size):
        s = tokenizer.decode([i])
        m = _WORD.fullmatch(s)
        if m and len(m.group(1)) >= min_letters:
            found.append((i, s))
    if not found:
        raise CorpusError(
            "absorption: the tokenizer has no single-token words (a space then lowercase letters); "
            "skip it with --metrics core probing"
        )
    if 0 < max_words < len(found):
        keep = np.sort(np.random.default_rng(seed).permutation(len(found))[:max_words])
        found = [found[i] for i in keep]
    ids = torch.tensor([i for i, _ in found], dtype=torch.int64)
    letters = torch.tensor([ord(s[1]) - ord("a") for _, s in found], dtype=torch.int64)
    return Words(ids, letters, [s for _, s in found])


def token_rows(
    lm, hook_point, token_ids: Tensor, prefix_ids: list[int], *, batch_size: int = 512, progress=None
) -> Tensor:
    """`[n, d]` float32 activation at each token, fed as `prefix_ids + [token]`."""
    from saekit.models.activations import lm_activations

    out = []
    prefix = torch.tensor(prefix_ids, dtype=torch.int64)
    for chunk in token_ids.split(batch_size):
        ids = torch.cat([prefix.expand(len(chunk), -1), chunk[:, None]], dim=1)
        x = lm_activations(lm, [hook_point], ids, torch.ones_like(ids, dtype=torch.bool))[str(hook_point)]
        out.append(x[:, -1].float().cpu())
        if progress is not None:
            progress.update(len(chunk))
    return torch.cat(out)
