"""Model loaders: the embedded SmolLM2 (GGUF, cached as safetensors), MiniLM, any transformers model."""
from saekit.models.cache import cache_dir
from saekit.models.load import EMBEDDED, load_model
from saekit.models.loaded import LoadedModel, dtype_name, torch_dtype

__all__ = ["EMBEDDED", "LoadedModel", "cache_dir", "dtype_name", "load_model", "torch_dtype"]
