"""`LoadedModel`: a model plus what the rest of saekit needs to know about it."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from saekit.device import auto_model_dtype, cpu_has_fast_bf16, resolve_device  # noqa: F401
from saekit.errors import ModelLoadError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


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
        for path in (
            "model.layers",
            "encoder.layer",
            "bert.encoder.layer",
            "transformer.h",
            "gpt_neox.layers",
        ):
            try:
                self.model.get_submodule(path)
                return path
            except AttributeError:
                continue
        raise ModelLoadError(
            f"model {self.name!r}: cannot find its list of layers; give hook points by full path"
        )


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


def resolve_dtype(name: str, device: torch.device | str | None = None) -> str:
    """ "auto" -> bfloat16 on CUDA or CPUs with native bf16, else float32 (`device` None = auto device);
    other names pass through."""
    if name != "auto":
        return name
    return auto_model_dtype(resolve_device(device if device is not None else "auto"))


def with_dtype(lm: LoadedModel, dtype: str) -> LoadedModel:
    """`lm` with its parameters in `dtype`: `lm` itself when it already is, else a cast copy.

    Why: a caller that needs one model in two dtypes (the demo harvests and steers in the device's
    fast dtype but evaluates and analyses in float32) loads it once, in float32, and derives the
    other. Only parameters are cast, as `load_model(dtype=...)` does; buffers such as the rotary
    `inv_freq` stay in float32, so the copy equals a model loaded directly in `dtype` (the embedded
    SmolLM2 casts its float32 weights the same way). Tied weights stay tied (one deep copy).
    """
    import copy

    target = torch_dtype(dtype)
    if lm.dtype == dtype_name(target):
        return lm
    model = copy.deepcopy(lm.model)
    for p in model.parameters():  # parameters() lists a tied weight once
        p.data = p.data.to(target)
    return lm._replace(model=model, dtype=dtype_name(target))
