"""Shared pieces of the foreign-format converters: safe file reading, tensor checks, assembly.

Every converter reads foreign tensors, rewrites them into the native layout (`W_enc [d_in, d_sae]`,
`W_dec [d_sae, d_in]`, ...) and hands them to `assemble`, which checks names, shapes and finiteness
once, so each format file only holds the facts of its own format.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saekit.errors import SAEFormatError
from saekit.sae.config import DTYPES, SAEConfig

#: Folds (b_dec into b_enc, decoder norms, ...) are computed in float64 so a conversion adds no
#: rounding beyond the final cast to the SAE dtype.
FOLD_DTYPE = torch.float64


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object, naming the file on any failure."""
    if not path.exists():
        raise SAEFormatError(
            f"missing {path.name} in {path.parent}; the folder is incomplete — re-download it"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SAEFormatError(f"{path} is not valid JSON ({exc}); the file is corrupt or truncated") from None
    if not isinstance(data, dict):
        raise SAEFormatError(f"{path} holds a JSON {type(data).__name__}, expected an object of config keys")
    return data


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Load every tensor of a safetensors file on CPU, naming the file on any failure."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.exists():
        raise SAEFormatError(f"missing weights file {path}; the folder is incomplete — re-download it")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SAEFormatError(
            f"cannot read {path} ({path.stat().st_size} bytes): {exc}; the file is corrupt or truncated"
        ) from None


def load_torch_weights_only(path: Path) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain containers only, never arbitrary pickles.

    A file that needs full unpickling is refused rather than executed: pickles can run code.
    """
    import pickle

    if not path.exists():
        raise SAEFormatError(f"missing weights file {path}; the folder is incomplete — re-download it")
    if path.is_dir():
        raise SAEFormatError(
            f"{path} is a folder; this format is a single weights file — pass the file itself"
        )
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SAEFormatError(
            f"refusing to load {path}: it is not a plain tensor checkpoint and would need full pickle "
            f"loading, which can execute arbitrary code ({first}). Re-save it as a state dict "
            "(`torch.save(model.state_dict(), ...)`) or as safetensors from a trusted environment"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise SAEFormatError(f"cannot read {path}: {exc}; the file is corrupt or truncated") from None


def torch_load_bytes(data: bytes, source: Path) -> Any:
    """`torch.load(weights_only=True)` of in-memory bytes (e.g. after saev's JSON header)."""
    import io
    import pickle

    if not (data[:2] == b"PK" or data[:1] == b"\x80"):  # neither torch's zip nor a legacy pickle
        raise SAEFormatError(
            f"cannot read the tensors of {source}: they are not a torch.save file ({len(data)} bytes "
            "starting "
            f"{data[:8]!r}); the file is corrupt or truncated"
        )
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SAEFormatError(
            f"refusing to load {source}: its tensor part needs full pickle loading, which can execute "
            f"arbitrary code ({str(exc).strip().splitlines()[0] if str(exc).strip() else 'unpickling error'})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise SAEFormatError(
            f"cannot read the tensors of {source}: {exc}; the file is corrupt or truncated"
        ) from None


def state_keys(path: Path) -> set[str] | None:
    """Top-level keys of a torch or safetensors file without reading its tensors (mmap), or None."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return set(fh.keys())
        except Exception:
            return None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception:
            return None
    if isinstance(obj, dict) and isinstance(obj.get("ae"), dict):
        obj = obj["ae"]
    return set(obj) if isinstance(obj, dict) else None


def require(tensors: dict[str, Tensor], names: list[str], source: Path, what: str) -> None:
    """Raise naming every tensor `what` needs that `source` lacks."""
    missing = [n for n in names if n not in tensors]
    if missing:
        raise SAEFormatError(
            f"{source} lacks tensor(s) {missing} needed by {what}; found {sorted(tensors)}. "
            "The file is incomplete or belongs to a different architecture"
        )


def expect_shape(
    tensors: dict[str, Tensor], name: str, shape: tuple[int, ...], source: Path, hint: str
) -> Tensor:
    """Return `tensors[name]` after checking its shape; `hint` says where `shape` came from."""
    found = tuple(tensors[name].shape)
    if found != tuple(shape):
        raise SAEFormatError(
            f"{source}: tensor {name!r} has shape {found} but {hint} implies {tuple(shape)}; "
            "config and weights disagree — re-download the SAE or fix the config"
        )
    return tensors[name]


def checked_tensors(
    tensors: dict[str, Tensor], shapes: dict[str, tuple[int, ...]], source: Path, hint: str
) -> dict[str, Tensor]:
    """`tensors[name]` for each name in `shapes`, shape-checked (`hint`: where the shapes came from) and in
    FOLD_DTYPE, ready for folding conventions into them. Call `require` first for a complete message."""
    return {n: expect_shape(tensors, n, shape, source, hint).to(FOLD_DTYPE) for n, shape in shapes.items()}


def native_dtype(dtype: torch.dtype | str | None) -> str:
    """Map a torch dtype or foreign dtype string (`torch.float32`, `bf16`) to a saekit dtype name."""
    if dtype is None:
        return "float32"
    name = str(dtype).replace("torch.", "")
    name = {
        "bf16": "bfloat16",
        "fp16": "float16",
        "half": "float16",
        "fp32": "float32",
        "float": "float32",
        "double": "float64",
        "fp64": "float64",
    }.get(name, name)
    return name if name in DTYPES else "float32"


def layer_from_hook(hook: str | None) -> int | None:
    """First integer after `layers.`/`blocks.`/`layer_`/`h.` in a hook name, e.g. "
    "`blocks.8.hook_resid_pre` -> 8."""
    if not hook:
        return None
    m = re.search(r"(?:layers|blocks|layer|h|block)[._](\d+)", hook)
    return int(m.group(1)) if m else None


def safe_log_threshold(threshold_F: Tensor) -> Tensor:
    """log(threshold), with thresholds <= 0 clamped to the smallest positive float32.

    Foreign JumpReLUs compute `relu(z) * (z > t)`; for t <= 0 that is `relu(z)`. Our JumpReLU computes
    `z * (z > exp(log_t))`, so t is clamped to 1.2e-38: the two agree except for pre-activations in
    (0, 1.2e-38], whose contribution is below float resolution. Keeps log_threshold finite (saveable).
    """
    tiny = torch.finfo(torch.float32).tiny
    return threshold_F.to(FOLD_DTYPE).clamp_min(tiny).log()


def fold_input_bias(W_enc_DF: Tensor, b_enc_F: Tensor, b_dec_D: Tensor) -> Tensor:
    """Encoder bias for an SAE whose foreign encoder does NOT subtract b_dec from its input.

    Foreign: `x W + b`. Native: `(x - b_dec) W + b'`. Equal for all x iff `b' = b + b_dec W`.
    """
    return b_enc_F.to(FOLD_DTYPE) + b_dec_D.to(FOLD_DTYPE) @ W_enc_DF.to(FOLD_DTYPE)


def assemble(cfg: SAEConfig, tensors: dict[str, Tensor], source: Path, device: str | torch.device | None):
    """Build a native SAE for `cfg` and fill it with `tensors` (native names and layout).

    Checks the tensor set matches the architecture exactly, every shape, and finiteness, so a
    converter bug or corrupt file fails here with a message instead of producing a silent garbage SAE.
    """
    from saekit.sae.registry import build

    skeleton = build(cfg, device="meta")
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:  # a converter bug, not a user error, but say it clearly anyway
        raise SAEFormatError(
            f"converting {source} to arch={cfg.arch!r}: missing native tensor(s) {missing}, unexpected "
            f"{extra}"
        )
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise SAEFormatError(
                f"converting {source}: native tensor {name!r} would have shape {tuple(t.shape)}, "
                f"expected {shape} for d_in={cfg.d_in}, d_sae={cfg.d_sae}"
            )
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise SAEFormatError(
                f"{source}: tensor feeding {name!r} contains NaN/inf; the weights are corrupt "
                "(or a decoder row has zero norm where the format divides by it)"
            )
    sae = build(cfg, device=device or "cpu")
    with torch.no_grad():
        for name, param in sae.state_dict().items():
            param.copy_(tensors[name].to(param.dtype))
    return sae


def check_int(value: Any, key: str, source: Path) -> int:
    """A positive integer config value, or a clear error naming the key."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value <= 0
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise SAEFormatError(f"{source}: config key {key!r} must be a positive integer, found {value!r}")
    return round(value)
