"""What every harvest driver shares: the store options, the one manifest builder, the writer opener.

Each model kind (LM, CLIP, diffusion) has its own config class that *inherits* `StoreOptions`, so
the flags that shape the store itself (`--out`, `--tokens`, `--shard-rows`, ...) are defined once
and read the same way by every driver.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from saekit.errors import SAEConfigError

DOCUMENTS_FILE = "documents.json"


@dataclass(frozen=True)
class StoreOptions:
    """Flags every `saekit harvest` kind shares: where the store goes and how it is written."""

    out: Path = Path("acts")
    """Output folder of the store; an interrupted harvest into it resumes. With several --hook-point points,
    one store per hook point in OUT/<hook point>/."""
    tokens: int = 200_000
    """Number of activation rows to store (per hook point); for image models a cap."""
    batch_size: int = 8
    """Contexts (LM), images / captions (CLIP) or prompts (diffusion) per forward pass."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Model dtype; auto = bfloat16 on CUDA and on CPUs with native bf16, else float32 (on AVX2-only
    CPUs bf16 is emulated and ~3x slower than float32)."""
    store_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Storage dtype of activations; auto = the model dtype (lossless)."""
    shard_rows: int = 32768
    """Rows per shard file."""
    device: str = "auto"
    """Where the model runs: auto (CUDA when present), cpu, cuda, cuda:N. Under torchrun each rank
    uses cuda:LOCAL_RANK when this is auto and CUDA is present."""
    overwrite: bool = False
    """Replace an existing, different or complete store in --out instead of refusing/reusing it."""
    repair: bool = False
    """Check every listed shard's checksum first; rewrite the first damaged shard and all after it."""
    threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""
    quiet: bool = False
    """No progress bar or messages."""

    def __post_init__(self) -> None:
        for name in ("tokens", "batch_size", "shard_rows"):
            if getattr(self, name) < 1:
                raise SAEConfigError(
                    f"harvest: --{name.replace('_', '-')} must be >= 1, found {getattr(self, name)}"
                )


NOT_RECORDED = ("out", "quiet", "threads", "overwrite", "repair", "device")
"""Config fields that do not affect the store's contents (kept out of the manifest)."""


def recorded_config(cfg: StoreOptions) -> dict[str, str]:
    """The config fields that shaped the store, as strings, for its manifest (and resume checks)."""
    return {k: str(v) for k, v in asdict(cfg).items() if k not in NOT_RECORDED}


def store_dtype(cfg: StoreOptions, model_dtype: str) -> str:
    """The storage dtype: the model's (lossless) unless asked otherwise; float16 etc. -> float32."""
    out = model_dtype if cfg.store_dtype == "auto" else cfg.store_dtype
    return out if out in ("float32", "bfloat16") else "float32"


def build_manifest(
    cfg: StoreOptions,
    *,
    model: str,
    hook_point: str,
    d: int,
    model_dtype: str,
    corpus: str,
    position: str,
    stream: str | None = None,
    layer: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The one manifest builder: the fields every store has, plus the driver's `extra` ones."""
    import saekit

    return {
        "model": model,
        "hook_point": hook_point,
        "stream": stream,
        "layer": layer,
        "d": int(d),
        "dtype": store_dtype(cfg, model_dtype),
        "model_dtype": model_dtype,
        "corpus": corpus,
        "batch_size": cfg.batch_size,
        "tokens_requested": cfg.tokens,
        "position": position,
        **extra,
        "saekit_version": saekit.__version__,
        "harvest_config": recorded_config(cfg),
    }


def write_documents(folder: Path, documents: list[dict[str, Any]]) -> None:
    """`documents.json`: entry `doc_id` describes that document (image path, caption, prompt + seed)."""
    from saekit.atomic import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DOCUMENTS_FILE
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")) == documents:
        return
    write_json_atomic(path, documents)


def hook_folder(out: Path, hook: str, n_hooks: int) -> Path:
    """One hook point writes into OUT itself; several write one store each into OUT/<hook point>/."""
    return out if n_hooks == 1 else out / hook.replace("/", "_")


def split_hooks(spec: str) -> list[str]:
    """`a,b,c` -> ["a", "b", "c"] (order kept, duplicates refused)."""
    hooks = [h.strip() for h in spec.split(",") if h.strip()]
    if not hooks:
        raise SAEConfigError(
            "harvest: --hook-point is empty; give e.g. model.layers.15 or model.layers.5,model.layers.10"
        )
    if len(set(hooks)) != len(hooks):
        raise SAEConfigError(f"harvest: --hook-point {spec!r} names a hook point twice")
    return hooks
