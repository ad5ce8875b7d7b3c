"""`load_model`: one entry point for the embedded models and anything transformers can load."""
from __future__ import annotations

import torch

from saekit.models.loaded import LoadedModel

EMBEDDED = ("smollm2", "minilm")


def load_model(name_or_path: str, *, dtype: str | torch.dtype = "bfloat16", quiet: bool = False) -> LoadedModel:
    """Load `smollm2` (embedded GGUF, cached), `minilm` (embedded), or a transformers id / folder.

    bfloat16 is the default because this project's CPUs have fast bf16 (AVX-512 BF16: ~4x the
    float32 throughput); ask for "float32" when exactness matters more than speed.
    """
    key = name_or_path.strip().lower()
    if key == "smollm2":
        from saekit.models.smollm2 import load_smollm2

        return load_smollm2(dtype=dtype, quiet=quiet)
    if key == "minilm":
        from saekit.models.minilm import load_minilm

        return load_minilm(dtype=dtype, quiet=quiet)
    from saekit.models.hf import load_hf

    return load_hf(name_or_path, dtype=dtype, quiet=quiet)
