"""Load SAEs saved by other libraries as native saekit SAEs, and write native SAEs back out.

Readers (one file each): SAELens, sparsify, dictionary_learning (incl. VSAETopK), re-n-y/sae, gytdau's
CLIP SAE, openai/sparse_autoencoder, OSU-NLP-Group/saev. Each reproduces the foreign library's
encode/decode exactly (up to float rounding) by rewriting weights into the native layout and folding
any differing conventions into them; see each module's docstring for the facts it relies on.
`load_any` detects the format and dispatches; `saekit.formats.export` writes the other direction.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from saekit.errors import SAEFormatError
from saekit.formats.detect import FORMATS, detect_format, known_formats
from saekit.formats.dictionary_learning import load_dictionary_learning
from saekit.formats.gytdau import load_gytdau
from saekit.formats.openai import load_openai
from saekit.formats.reny import load_reny
from saekit.formats.saelens import load_saelens
from saekit.formats.saev import load_saev
from saekit.formats.sparsify import load_sparsify


def _native(path, device):
    from saekit.sae.io import load_sae

    return load_sae(path, device=device)


LOADERS = {
    "saekit": _native,
    "saelens": load_saelens,
    "sparsify": load_sparsify,
    "dictionary_learning": load_dictionary_learning,
    "reny": load_reny,
    "gytdau": load_gytdau,
    "openai": load_openai,
    "saev": load_saev,
}


def load_any(
    path: str | Path, device: str | torch.device | None = None, *, format: str | None = None, **options: Any
):
    """Load a native or foreign SAE folder/file as a saekit `SAE`.

    `format` skips detection (one of `known_formats()`); `options` go to the converter, e.g.
    `scaling_factor=` for SAELens `expected_average_only_in` SAEs, `dict_class=` for dictionary_learning,
    `center_input=` for saev.
    """
    if format is None:
        format, path = detect_format(path)
    if format not in LOADERS:
        raise SAEFormatError(f"unknown SAE format {format!r}; known: {', '.join(known_formats())}")
    loader = LOADERS[format]
    accepted = {n for n, p in inspect.signature(loader).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise SAEFormatError(
            f"{path} is in {format!r} format, which takes option(s) {sorted(accepted) or 'none'}; got "
            f"{unknown}"
        )
    return loader(path, device, **options)


def output_folder(path: str | Path) -> Path:
    """Where outputs about an SAE go by default (eval/, calibration, analysis): the SAE folder itself,
    or for a single-file SAE (`x.pth`, saev `sae.pt`) a folder named after the file beside it. A hub SAE
    (`hf:ORG/REPO/PATH@REV`) writes under `$SAEKIT_CACHE/hub/ORG--REPO/PATH@REV`: never into the HF
    cache, never into a folder literally named `hf:` in the working directory."""
    from saekit.formats.hub import is_hf_spec, parse_hf_spec

    if is_hf_spec(path):
        from saekit.models.cache import cache_dir

        spec = parse_hf_spec(path)
        leaf = (spec.path or "root").replace("/", "--") + (f"@{spec.revision}" if spec.revision else "")
        return cache_dir() / "hub" / spec.repo_id.replace("/", "--") / leaf
    path = Path(path)
    return path.parent / path.stem if path.is_file() else path


__all__ = [
    "output_folder",
    "FORMATS",
    "LOADERS",
    "detect_format",
    "known_formats",
    "load_any",
    "load_dictionary_learning",
    "load_gytdau",
    "load_openai",
    "load_reny",
    "load_saelens",
    "load_saev",
    "load_sparsify",
]
