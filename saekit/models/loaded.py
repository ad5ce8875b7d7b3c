"""`LoadedModel`: a model plus what the rest of saekit needs to know about it."""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from saekit.errors import ModelLoadError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LoadedModel(NamedTuple):
    """Returned by `load_model`; `dtype` is the name ("bfloat16"/"float32") recorded in manifests."""

    model: nn.Module
    tokenizer: Any
    name: str
    kind: str
    """"causal_lm" or "encoder"."""
    dtype: str
    d_model: int
    n_layers: int

    @property
    def layers_path(self) -> str:
        """Dotted path of the layer list (e.g. `model.layers`), for building hook points."""
        for path in ("model.layers", "encoder.layer", "bert.encoder.layer", "transformer.h", "gpt_neox.layers"):
            try:
                self.model.get_submodule(path)
                return path
            except AttributeError:
                continue
        raise ModelLoadError(f"model {self.name!r}: cannot find its list of layers; give hook points by full path")


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    """Map "bfloat16"/"float32"/"float16" (or a torch.dtype) to a torch.dtype, with a clear error."""
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ModelLoadError(f"unknown dtype {name!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """Inverse of torch_dtype, e.g. torch.bfloat16 -> "bfloat16"."""
    return str(dtype).removeprefix("torch.")


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX); else bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str) -> str:
    """"auto" -> "bfloat16" on CPUs with native bf16 (or CUDA), else "float32"; other names pass through."""
    if name != "auto":
        return name
    return "bfloat16" if torch.cuda.is_available() or cpu_has_fast_bf16() else "float32"
