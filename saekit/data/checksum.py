"""Shard checksums: written once per shard, checked before a shard's rows are first read.

Each manifest shard entry records `bytes` and `sha256` (about 1 GB/s here, SHA-NI). Opening a store
checks sizes only (instant, even for 100 GB FLUX stores); the first read of each shard hashes that
shard once per process, so a training run pays ~0.1 s per 75 MB shard once and never trains on a
shard that changed in place. `verify_store` hashes everything and scans for NaN/inf.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from saekit.errors import StoreError

CHUNK = 8 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def repair_hint(folder: Path, shard_file: str) -> str:
    """How to re-harvest a damaged shard (the resume cursor after each shard is in the manifest)."""
    return (
        f"Re-harvest from that shard: rerun the same `saekit harvest ... --out {folder}` command with "
        f"--repair (it keeps the shards before {shard_file} and rewrites it and every later one)"
    )


def damage(path: Path, entry: dict[str, Any]) -> str | None:
    """What is wrong with a listed shard file (missing, size, checksum), or None if it is intact."""
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        return f"has {size} bytes, the manifest says {entry['bytes']} (truncated or replaced)"
    if "sha256" in entry and file_sha256(path) != entry["sha256"]:
        return "was changed in place (its sha256 differs from the one written with it)"
    return None


def bad_rows(acts: np.ndarray, bf16: bool) -> list[int]:
    """Local rows holding NaN/inf (to name the damaged row)."""
    import torch

    out: list[int] = []
    for start in range(0, acts.shape[0], 4096):  # blocks: bounded memory on big shards
        t = torch.from_numpy(np.array(acts[start : start + 4096]))
        t = t.view(torch.bfloat16).float() if bf16 else t.float()
        out += (start + (~torch.isfinite(t)).any(dim=1).nonzero().flatten()).tolist()
    return out


def describe_rows(rows: list[int], first_row: int) -> str:
    if not rows:
        return "no row holds NaN/inf, so the changed rows cannot be named"
    shown = ", ".join(f"{r} (store row {first_row + r})" for r in rows[:5])
    return f"{len(rows)} row(s) hold NaN/inf: local row {shown}"


def rewind_to_first_bad(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """For `--repair`: drop the first damaged shard and all later ones from the manifest, so the
    resumed harvest rewrites them (identically: each shard entry records the cursor after it)."""
    from saekit.atomic import write_json_atomic
    from saekit.data.manifest import MANIFEST

    shards = manifest["shards"]
    first = next((i for i, e in enumerate(shards) if damage(folder / e["file"], e)), None)
    if first is None:
        return manifest
    cursor = None if first == 0 else shards[first - 1].get("cursor", "absent")
    if cursor == "absent":
        raise StoreError(
            f"cannot repair {folder}: it was written by a saekit that did not record shard cursors; "
            "re-harvest with --overwrite"
        )
    kept = shards[:first]
    new = dict(
        manifest,
        shards=kept,
        count=sum(int(e["count"]) for e in kept),
        complete=False,
        resume_cursor=cursor,
    )
    new["progress"] = manifest.get("progress") or {}
    write_json_atomic(folder / MANIFEST, new)
    for e in shards[first:]:
        (folder / e["file"]).unlink(missing_ok=True)
    return new


def verify_store(path: str | Path) -> dict[str, Any]:
    """Check a store fully: every shard's size and sha256, and no NaN/inf in any row.

    Returns `{"rows", "shards", "bytes"}`; raises StoreError naming the shard, the row and the fix.
    """
    from saekit.data.store import ActivationStore

    store = ActivationStore.open(path)
    total = 0
    for i, shard in enumerate(store.shards):
        shard.check()
        rows = bad_rows(shard.arrays["acts"], shard.dtypes["acts"] == "BF16")
        if "target" in shard.arrays:  # a paired store: its targets must be finite too
            rows = sorted(set(rows) | set(bad_rows(shard.arrays["target"], shard.dtypes["target"] == "BF16")))
        if rows:
            raise StoreError(
                f"store shard {shard.path}: {describe_rows(rows, int(store._starts[i]))}. "
                f"{repair_hint(store.folder, shard.path.name)}"
            )
        total += shard.path.stat().st_size
    return {"rows": len(store), "shards": len(store.shards), "bytes": total}
