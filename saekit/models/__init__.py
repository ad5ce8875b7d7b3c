"""Model loaders: the embedded SmolLM2 (GGUF, cached as safetensors), MiniLM, any transformers model."""

from saekit.models.cache import cache_dir
from saekit.models.load import EMBEDDED, load_model
from saekit.models.loaded import (
    LoadedModel,
    cpu_has_fast_bf16,
    dtype_name,
    resolve_dtype,
    torch_dtype,
    with_dtype,
)

__all__ = [
    "EMBEDDED",
    "LoadedModel",
    "cache_dir",
    "cpu_has_fast_bf16",
    "dtype_name",
    "load_model",
    "resolve_dtype",
    "torch_dtype",
    "with_dtype",
]
