"""Shared pieces of the foreign-format converters: safe file reading, tensor checks, assembly.

Every converter reads foreign tensors, rewrites them into the native layout (`W_enc [d_in, d_sae]`,
`W_dec [d_sae, d_in]`, ...) and hands them to `assemble`, which checks names, shapes and finiteness
once, so each format file only holds the facts of its own format.

Every file is untrusted input: the helpers here are where malformed input is refused with an
SAEFormatError naming the file, what is wrong and what to do — parser failures (`read_json`,
`read_safetensors`, `load_torch_weights_only`), missing, non-floating or wrongly shaped tensors
(`require`, `expect_shape`, `matrix_dims`, `scalar`), config values that are not positive integers or
positive numbers (`check_int`, `positive_number`, `section`), and configs the native `SAEConfig` refuses
(`make_config`). `assemble` ends with `saekit.sae.integrity.check_loaded` (finite weights and outputs).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saekit.errors import SAEConfigError, SAEFormatError
from saekit.sae.config import DTYPES, SAEConfig
from saekit.sae.io import MAX_SIZE, read_tensors

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
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise SAEFormatError(f"{path} is not valid JSON ({exc}); the file is corrupt or truncated") from None
    if not isinstance(data, dict):
        raise SAEFormatError(f"{path} holds a JSON {type(data).__name__}, expected an object of config keys")
    return data


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Load every tensor of a safetensors file on CPU, naming the file on any failure."""
    return read_tensors(path, fix="re-download it")


def _weights_only(source: Path, load: Any, what: str) -> Any:
    """`load()` (a `torch.load(..., weights_only=True)`) with every failure an SAEFormatError.

    The weights-only unpickler refuses globals (a pickle that would run code) with UnpicklingError; on a
    corrupt or truncated file it raises whatever its parsing trips over (IndexError, KeyError,
    struct.error, ... for a one-byte file), so everything is caught here, at that one boundary, and never
    retried with a full unpickler."""
    import pickle

    try:
        return load()
    except pickle.UnpicklingError as exc:
        raise SAEFormatError(
            f"refusing to load {source}: {what} is not a plain tensor checkpoint and would need full pickle "
            f"loading, which can execute arbitrary code ({_unpickler_reason(exc)}). If it is corrupt, "
            "re-download it; if it is trusted, re-save it as a state dict (`torch.save(model.state_dict(), "
            "...)`) or as safetensors"
        ) from exc
    except MemoryError:  # a genuine shortage, not a corrupt file
        raise
    except Exception as exc:  # the unpickler's errors on damaged bytes are not one type
        raise SAEFormatError(
            f"cannot read {what} of {source} ({type(exc).__name__}: {exc}); the file is corrupt or "
            "truncated — re-download it"
        ) from exc


def _unpickler_reason(exc: Exception) -> str:
    """The line of torch's weights-only refusal that says what was refused, without its advice to unpickle
    fully or allowlist the global, and without terminal colour codes."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else "")
    return reason.split(". Please use")[0] or type(exc).__name__  # not torch's advice to allowlist it


def load_torch_weights_only(path: Path) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain containers only, never arbitrary pickles.

    A file that needs full unpickling is refused rather than executed: pickles can run code.
    """
    if not path.exists():
        raise SAEFormatError(f"missing weights file {path}; the folder is incomplete — re-download it")
    if path.is_dir():
        raise SAEFormatError(
            f"{path} is a folder; this format is a single weights file — pass the file itself"
        )
    return _weights_only(
        path, lambda: torch.load(str(path), map_location="cpu", weights_only=True), "the file"
    )


def torch_load_bytes(data: bytes, source: Path) -> Any:
    """`torch.load(weights_only=True)` of in-memory bytes (e.g. after saev's JSON header)."""
    import io

    if not (data[:2] == b"PK" or data[:1] == b"\x80"):  # neither torch's zip nor a legacy pickle
        raise SAEFormatError(
            f"cannot read the tensors of {source}: they are not a torch.save file ({len(data)} bytes "
            f"starting {data[:8]!r}); the file is corrupt or truncated — re-download it"
        )
    return _weights_only(
        source,
        lambda: torch.load(io.BytesIO(data), map_location="cpu", weights_only=True),
        "its tensor part",
    )


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


def tensor_dict(obj: Any, source: Path, what: str) -> dict[str, Tensor]:
    """The string-keyed tensors of an unpickled state dict (other entries are the format's to read)."""
    if not isinstance(obj, dict):
        raise SAEFormatError(
            f"{source} holds a {type(obj).__name__}, expected {what} (a state dict of tensors); the file is "
            "corrupt or is not an SAE checkpoint"
        )
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}


def _floating(tensors: dict[str, Tensor], name: str, source: Path) -> Tensor:
    t = tensors[name]
    if not t.is_floating_point():
        raise SAEFormatError(
            f"{source}: tensor {name!r} has dtype {t.dtype}; SAE weights are floating point (float32, "
            "bfloat16, float16) — the file is corrupt or was saved with a wrong dtype; re-download or "
            "re-export it"
        )
    return t


def require(tensors: dict[str, Tensor], names: list[str], source: Path, what: str) -> None:
    """Raise naming every tensor `what` needs that `source` lacks, or the first that is not floating point."""
    missing = [n for n in names if n not in tensors]
    if missing:
        raise SAEFormatError(
            f"{source} lacks tensor(s) {missing} needed by {what}; found {sorted(tensors)}. "
            "The file is incomplete or belongs to a different architecture"
        )
    for name in names:
        _floating(tensors, name, source)


def expect_shape(
    tensors: dict[str, Tensor], name: str, shape: tuple[int, ...], source: Path, hint: str
) -> Tensor:
    """Return `tensors[name]` after checking it is floating point with this shape; `hint` says where
    `shape` came from."""
    found = tuple(_floating(tensors, name, source).shape)
    if found != tuple(shape):
        raise SAEFormatError(
            f"{source}: tensor {name!r} has shape {found} but {hint} implies {tuple(shape)}; "
            "config and weights disagree — re-download the SAE or fix the config"
        )
    return tensors[name]


def matrix_dims(tensors: dict[str, Tensor], name: str, source: Path) -> tuple[int, int]:
    """The two sizes of `tensors[name]`, a floating-point matrix with no empty side, for formats whose
    d_in and d_sae come from a weight rather than a config."""
    t = _floating(tensors, name, source)
    if t.ndim != 2 or 0 in t.shape:
        raise SAEFormatError(
            f"{source}: tensor {name!r} has shape {tuple(t.shape)}; it must be a non-empty matrix (the SAE's "
            "sizes are read from it) — the file is corrupt or was flattened; re-download or re-export it"
        )
    return int(t.shape[0]), int(t.shape[1])


def scalar(tensors: dict[str, Tensor], name: str, source: Path, *, floating: bool = True) -> float:
    """The one finite number a buffer holds (a `[]` tensor, or a vector repeating one value); `floating`
    False for integer buffers such as dictionary_learning's `k`."""
    t = _floating(tensors, name, source) if floating else tensors[name]
    real = not (t.is_complex() or t.dtype == torch.bool)
    flat = t.detach().reshape(-1).to(torch.float64) if real else None
    if flat is None or flat.numel() == 0 or not bool((flat == flat[0]).all()) or not flat[0].isfinite():
        raise SAEFormatError(
            f"{source}: tensor {name!r} (shape {tuple(t.shape)}, dtype {t.dtype}) must hold one finite "
            "number; the file is corrupt — re-download or re-export it"
        )
    return flat[0].item()


def checked_tensors(
    tensors: dict[str, Tensor], shapes: dict[str, tuple[int, ...]], source: Path, hint: str
) -> dict[str, Tensor]:
    """`tensors[name]` for each name in `shapes`, shape-checked (`hint`: where the shapes came from) and in
    FOLD_DTYPE, ready for folding conventions into them. Call `require` first for a complete message."""
    return {n: expect_shape(tensors, n, shape, source, hint).to(FOLD_DTYPE) for n, shape in shapes.items()}


def section(cfg: dict[str, Any], key: str, source: Path) -> dict[str, Any]:
    """`cfg[key]` when it is a JSON object, `{}` when absent or null; anything else is refused."""
    value = cfg.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SAEFormatError(
            f"{source}: config entry {key!r} must be an object of settings, found {type(value).__name__} "
            f"{value!r:.60}; the config is corrupt — fix it or re-download the SAE"
        )
    return value


def text(value: Any) -> str | None:
    """A provenance string (model, hook point): informational, so anything but a string is dropped."""
    return value if isinstance(value, str) else None


def count(value: Any) -> int | None:
    """A provenance count (layer, tokens trained): a non-negative integer, else dropped (None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value <= 2**63 - 1 else None


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
    if not isinstance(hook, str) or not hook:
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


def make_config(source: Path, **fields: Any) -> SAEConfig:
    """`SAEConfig(**fields)`, with a value the native config refuses (k > d_sae, ...) reported against
    the foreign file it came from."""
    try:
        return SAEConfig(**fields)
    except SAEConfigError as exc:
        raise SAEFormatError(
            f"{source}: its config does not describe a valid SAE ({exc}); the config is corrupt or belongs "
            "to another SAE — fix it or re-download the SAE"
        ) from exc


def assemble(cfg: SAEConfig, tensors: dict[str, Tensor], source: Path, device: str | torch.device | None):
    """Build a native SAE for `cfg` and fill it with `tensors` (native names and layout).

    Checks the tensor set matches the architecture exactly and every shape, then (`check_loaded`, in the
    SAE's own dtype) finiteness and a probe encode/decode, so a converter bug or corrupt file fails here
    with a message instead of producing a silent garbage SAE.
    """
    from saekit.sae.integrity import check_loaded
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
        if tuple(t.shape) != shape or not t.is_floating_point():
            raise SAEFormatError(
                f"converting {source}: native tensor {name!r} would have shape {tuple(t.shape)} and dtype "
                f"{t.dtype}, expected {shape} floating point for d_in={cfg.d_in}, d_sae={cfg.d_sae}"
            )
    sae = build(cfg, device=device or "cpu")
    with torch.no_grad():
        for name, param in sae.state_dict().items():
            param.copy_(tensors[name].to(param.dtype))
    check_loaded(sae, source)
    return sae


def check_int(value: Any, key: str, source: Path) -> int:
    """A positive integer config value (an integral float such as 8.0 counts), or an error naming the key:
    8.7, "8", true, NaN, 0, -1 and absurdly large values are refused, never rounded."""
    ok = not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    )
    if not ok or not 0 < value <= MAX_SIZE:
        raise SAEFormatError(
            f"{source}: config key {key!r} must be a positive integer (at most {MAX_SIZE}), found "
            f"{value!r:.60}; the config is corrupt — fix it or re-download the SAE"
        )
    return int(value)


def positive_number(
    value: Any, key: str, source: Path, fix: str = "the config is corrupt — fix it or re-download the SAE"
) -> float:
    """A finite number > 0 (a scaling or norm factor, a bandwidth), or an error naming `key`, where it came
    from and `fix`."""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise SAEFormatError(f"{source}: {key} must be a positive finite number, found {value!r:.60}; {fix}")
    return float(value)
