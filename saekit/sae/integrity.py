"""The SAE folder's weights and config.json as one unit: size, sha256 and a per-save pair token.

`save_sae` writes the weights (atomically) and then config.json (atomically) recording the weights'
size, sha256 and a random token that the weights' safetensors metadata also holds. A crash between
the two writes leaves new weights beside the old config (token and size disagree), a truncated copy
has the wrong size, and bytes overwritten in place change the sha256: each is refused on open with
what to do. Old folders without the record are accepted unchecked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from saekit.errors import SAEFormatError

#: Weights files up to this size are hashed on every open (~0.1-0.3 s per 100 MB); larger ones only by
#: `verify_folder` (`saekit info --verify`), so opening a multi-GB SAE stays fast.
HASH_ON_OPEN_BYTES = 512 * 2**20
FIX = "re-save the SAE (or re-copy / re-download the whole folder)"


def file_sha256(path: Path) -> str:
    """Streaming sha256 of a file (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def weights_record(blob: bytes) -> dict[str, Any]:
    """What config.json records about a weights file written from `blob`."""
    return {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def _pair_token(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("pair")
    except Exception:  # unreadable header: the loader's own read names the corruption
        return None


def check_pair(folder: Path, raw: dict[str, Any], name: str, *, full: bool = False) -> dict[str, Any]:
    """Check `folder/name` against the record in config.json `raw`; returns what was checked.

    Always: size and pair token. The sha256 when `full` or the file is at most HASH_ON_OPEN_BYTES.
    """
    path = folder / name
    record = (raw.get("files") or {}).get(name)
    if record is None:
        return {"file": name, "recorded": False}
    if not path.exists():
        raise SAEFormatError(f"missing weights file {path} (config.json records it); {FIX}")
    size = path.stat().st_size
    if size != record.get("size"):
        raise SAEFormatError(
            f"{path} ({size} bytes) does not match config.json, which recorded {record.get('size')} bytes: "
            "the file is corrupt or truncated, or from a different save (an interrupted save or copy?); "
            f"{FIX}"
        )
    token = raw.get("pair")
    found = _pair_token(path)
    if token is not None and found is not None and token != found:
        raise SAEFormatError(
            f"{path} and {folder / 'config.json'} come from two different saves (pair token {found} vs "
            f"{token}): a save was interrupted between the two files; {FIX}"
        )
    hashed = full or size <= HASH_ON_OPEN_BYTES
    if hashed:
        digest = file_sha256(path)
        if digest != record.get("sha256"):
            raise SAEFormatError(
                f"{path} has sha256 {digest[:16]}... but config.json recorded "
                f"{str(record.get('sha256'))[:16]}...: "
                f"its bytes changed after saving (corrupted or overwritten in place); {FIX}"
            )
    return {"file": name, "recorded": True, "size": size, "sha256_checked": hashed}
