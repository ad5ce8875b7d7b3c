"""Any transformers model id or local folder (causal LM if the config says so, else an encoder)."""

from __future__ import annotations

import torch

from saekit.errors import ModelLoadError
from saekit.models.loaded import LoadedModel, dtype_name, torch_dtype


def _is_causal(config) -> bool:
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or bool(
        getattr(config, "is_decoder", False)
    )


def load_hf(
    name_or_path: str, *, dtype: str | torch.dtype = "bfloat16", quiet: bool = False, kind: str | None = None
) -> LoadedModel:
    """`from_pretrained` for users with a local folder or internet; errors say which and how to fix."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    dt = torch_dtype(dtype)
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load model {name_or_path!r}: {exc}. Use 'smollm2' or 'minilm' (embedded), "
            "a local folder "
            f"with config.json, or a Hugging Face id (needs internet)"
        ) from exc
    kind = kind or ("causal_lm" if _is_causal(config) else "encoder")
    cls = AutoModelForCausalLM if kind == "causal_lm" else AutoModel
    try:
        model = cls.from_pretrained(name_or_path, dtype=dt)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load weights/tokenizer of {name_or_path!r} as {cls.__name__}: {exc}"
        ) from exc
    model.eval().requires_grad_(False)
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    d_model = getattr(text_cfg, "hidden_size", None) or getattr(text_cfg, "d_model", 0)
    n_layers = getattr(text_cfg, "num_hidden_layers", None) or getattr(text_cfg, "n_layer", 0)
    return LoadedModel(model, tokenizer, name_or_path, kind, dtype_name(dt), int(d_model), int(n_layers))
