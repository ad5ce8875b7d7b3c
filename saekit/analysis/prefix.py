"""A fixed prefix computed once: many candidate suffixes scored after the same real context.

A real start is the whole harvest window up to the top token (up to `context_len` tokens; cutting it
shorter changes the activation, often a lot: measured in docs/results/maximisers.md), but the search
edits only its last few tokens. Every candidate shares the tokens before, so their keys and values
are computed once (for the layers up to the hook point; for every layer, lazily, when the fluency
cross-entropy is needed) and expanded over the candidate batch: a candidate then costs its suffix.

Models whose forward takes no `past_key_values`, and any model where the cached forward disagrees
with a plain forward (checked once per prefix), get the prefix concatenated into every forward
instead: the same numbers, slower.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from saekit.models.kv_cache import cache_kwargs

KV = list[tuple[Tensor, Tensor]]


def cache_of(kv: KV, batch: int):
    """A fresh DynamicCache holding `kv` expanded to `batch` rows (the forward appends to it)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(kv):
        cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
    return cache


def _kv(cache) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers if layer.is_initialized]


class Prefix:
    """Token ids `[P]` before the edited suffix, with their cached keys/values when the model allows."""

    def __init__(self, model: nn.Module, ids_P: Tensor, run_to_hook):
        self.model = model
        self.ids = ids_P
        self.embeds = model.get_input_embeddings().weight.detach()[ids_P]  # [P, d]
        self.trunc: KV | None = None
        self._full: tuple[KV, Tensor] | None = None
        try:
            from transformers import DynamicCache

            cache = DynamicCache()
            with torch.no_grad():
                run_to_hook(input_ids=ids_P[None], **cache_kwargs(model, cache))
            self.trunc = _kv(cache) or None
        except (TypeError, ValueError, ImportError, AttributeError):
            self.trunc = None

    def __len__(self) -> int:
        return self.ids.numel()

    def hook_cache(self, batch: int):
        """Cache for a forward of `batch` suffixes up to the hook point, or None (concatenate instead)."""
        return None if self.trunc is None else cache_of(self.trunc, batch)

    def full(self) -> tuple[KV | None, Tensor]:
        """(every layer's keys/values or None, the model's logits `[V]` at the prefix's last token)."""
        if self._full is None:
            from transformers import DynamicCache

            cache = DynamicCache() if self.trunc is not None else None
            kw = {"use_cache": False} if cache is None else cache_kwargs(self.model, cache)
            with torch.no_grad():
                out = self.model(input_ids=self.ids[None], **kw)
            self._full = (None if cache is None else _kv(cache), out.logits[0, -1].float())
        kv, last = self._full
        return kv, last

    def disable_cache(self) -> None:
        """Fall back to concatenation (the cached forward disagreed with the plain one)."""
        self.trunc = None
        self._full = None
