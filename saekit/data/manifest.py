"""The activation store manifest: what produced the activations and which shards hold them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saekit.errors import StoreError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
STORE_DTYPES = ("float32", "bfloat16")
IDENTITY_KEYS = (
    "model",
    "hook_point",
    "dtype",
    "model_dtype",
    "d",
    "corpus",
    "context_len",
    "exclusions",
    "tokens_requested",
    "prepend_bos",
    "shard_rows",
    "batch_size",
    "max_norm_ratio",
    "harvest_config",
    "world_size",
    "rank",
    "paired",
    "d_out",
    "target_hook_point",
)
"""Fields that must agree before an interrupted store may be resumed (present ones only)."""


TARGET = "target"
"""Name of the second tensor of a paired store's shards (`[n, d_out]`, the module's output; `acts` holds
its input). A paired store's manifest says `"paired": true` and records `d_out` and `target_hook_point`."""


def is_paired(manifest: dict[str, Any]) -> bool:
    """True for a store written by `saekit harvest --paired` (input and output of one module per row)."""
    return bool(manifest.get("paired"))


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and sanity-check `folder/manifest.json`; errors say what is wrong and what to do."""
    path = folder / MANIFEST
    if not path.is_file():
        raise StoreError(
            f"{folder} is not an activation store: {MANIFEST} is missing. Create one with `saekit "
            f"harvest --out {folder}`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is corrupt ({exc}); re-run the harvest into a fresh --out folder") from exc
    if not isinstance(manifest, dict):
        raise StoreError(f"{path}: expected a JSON object, found {type(manifest).__name__}")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema_version {version!r} is not supported (this saekit reads {SCHEMA_VERSION}); "
            f"re-harvest or upgrade saekit"
        )
    missing = [k for k in ("d", "count", "dtype", "shards") if k not in manifest]
    if missing:
        raise StoreError(f"{path}: missing fields {missing}; the manifest was edited or truncated")
    if manifest["dtype"] not in STORE_DTYPES:
        raise StoreError(f"{path}: dtype {manifest['dtype']!r} is not one of {STORE_DTYPES}")
    if manifest.get("paired") and not isinstance(manifest.get("d_out"), int):
        raise StoreError(
            f"{path}: a paired store must record d_out (the target width) as an integer, found "
            f"{manifest.get('d_out')!r}; the manifest was edited or truncated — re-harvest with --paired"
        )
    total = sum(int(s["count"]) for s in manifest["shards"])
    if total != manifest["count"]:
        raise StoreError(
            f"{path}: count {manifest['count']} disagrees with the shard counts (sum {total}); "
            f"the manifest was edited or is from another store"
        )
    return manifest


def identity(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: fields[k] for k in IDENTITY_KEYS if k in fields}


OFF_VALUES = ("False", "None", "")
"""How a recorded harvest flag reads when it is off (recorded_config writes every value as a string)."""


def identity_diff(want: dict[str, Any], have: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`{field: (in the folder, requested)}` for the identity fields that differ.

    A harvest-config flag that only one side records counts as equal while it is off: a later saekit
    added it with that default (`paired`, for instance), and the store made before it is the same store,
    so it must still resume rather than be refused."""
    w, h = identity(want), identity(have)
    wc, hc = w.get("harvest_config"), h.get("harvest_config")
    if isinstance(wc, dict) and isinstance(hc, dict):
        only = set(wc) ^ set(hc)
        if all(str({**hc, **wc}[k]) in OFF_VALUES for k in only):
            w = {**w, "harvest_config": {k: v for k, v in wc.items() if k not in only}}
            h = {**h, "harvest_config": {k: v for k, v in hc.items() if k not in only}}
    return {k: (h.get(k), w.get(k)) for k in set(w) | set(h) if w.get(k) != h.get(k)}
