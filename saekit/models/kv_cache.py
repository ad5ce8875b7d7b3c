"""Passing and reading a transformers key/value cache across versions.

transformers 5.x renamed the forward argument and the output field `past_key_values` to `cache` and warns
on the old names; older releases know only the old ones. These two helpers pick whichever the model has,
so generation and the maximiser's prefix cache run warning-free on both.
"""

from __future__ import annotations

import functools
import inspect

from torch import nn


@functools.cache
def _cache_argument(model_type: type) -> str:
    params = inspect.signature(model_type.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model: nn.Module, cache) -> dict:
    """Keyword arguments that pass `cache` to `model.forward` (decided once per model class)."""
    return {_cache_argument(type(model)): cache, "use_cache": True}


def returned_cache(out):
    """The key/value cache a forward returned (`out.cache` in transformers 5.x, else `past_key_values`)."""
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values
