"""Load SAEs saved by other libraries (SAELens, sparsify, dictionary_learning) as native saekit SAEs.

Each converter reproduces the foreign library's encode/decode exactly (up to float rounding) by
rewriting weights into the native layout and folding any differing conventions into them; see the
module docstrings for the facts each relies on. `load_any` detects the format and dispatches.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from saekit.errors import SAEFormatError
from saekit.formats.detect import FORMATS, detect_format, known_formats
from saekit.formats.dictionary_learning import load_dictionary_learning
from saekit.formats.saelens import load_saelens
from saekit.formats.sparsify import load_sparsify


def load_any(
    path: str | Path, device: str | torch.device | None = None, *, format: str | None = None, **options: Any
):
    """Load a native or foreign SAE folder/file as a saekit `SAE`.

    `format` skips detection (one of `known_formats()`); `options` go to the converter, e.g.
    `scaling_factor=` for SAELens `expected_average_only_in` SAEs, `dict_class=` for dictionary_learning.
    """
    if format is None:
        format, path = detect_format(path)
    loaders = {
        "saekit": _native,
        "saelens": load_saelens,
        "sparsify": load_sparsify,
        "dictionary_learning": load_dictionary_learning,
    }
    if format not in loaders:
        raise SAEFormatError(f"unknown SAE format {format!r}; known: {', '.join(known_formats())}")
    loader = loaders[format]
    accepted = {n for n, p in inspect.signature(loader).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise SAEFormatError(
            f"{path} is in {format!r} format, which takes option(s) {sorted(accepted) or 'none'}; got {unknown}"
        )
    return loader(path, device, **options)


def _native(path, device):
    from saekit.sae.io import load_sae

    return load_sae(path, device=device)


__all__ = [
    "FORMATS",
    "detect_format",
    "known_formats",
    "load_any",
    "load_dictionary_learning",
    "load_saelens",
    "load_sparsify",
]
