"""Which SAE format is this folder or file? Decided by file names only (cheap, never unpickles).

Each format is one `FormatSpec`: a name, the files that identify it, and a probe. The first probe that
matches wins; when none does, the error lists every known format with the files it looked for and
what the folder actually holds, so the user can see at a glance what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from saekit.errors import SAEFormatError
from saekit.formats import dictionary_learning, saelens, sparsify


@dataclass(frozen=True)
class FormatSpec:
    """One loadable SAE format."""

    name: str
    """Short name used in messages and `load_any(..., format=...)`."""
    files: str
    """The files that identify it, as shown to users."""
    probe: Callable[[Path], bool]
    """True when the path (folder, or file for single-file formats) is in this format."""


def _is_native(folder: Path) -> bool:
    cfg = folder / "config.json"
    if not (cfg.is_file() and (folder / "model.safetensors").is_file()):
        return False
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True  # let the native loader explain the corrupt file
    return isinstance(raw, dict) and ("schema_version" in raw or raw.get("format") == "saekit.sae")


FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec("saekit", "config.json (schema_version) + model.safetensors", _is_native),
    FormatSpec("saelens", f"{saelens.CFG_FILE} + {saelens.WEIGHTS_FILE}", saelens.looks_like_saelens),
    FormatSpec(
        "sparsify",
        f"{sparsify.CFG_FILE} + {sparsify.WEIGHTS_FILE} (or sub-folders per hookpoint holding them)",
        lambda p: sparsify.looks_like_sparsify(p) or bool(sparsify.hookpoint_folders(p)),
    ),
    FormatSpec(
        "dictionary_learning",
        f"{dictionary_learning.WEIGHTS_FILE} (+ {dictionary_learning.CONFIG_FILE}), or a .pt state dict file",
        dictionary_learning.looks_like_dictionary_learning,
    ),
)


def known_formats() -> list[str]:
    return [f.name for f in FORMATS]


def _normalise(path: Path) -> Path:
    """A weights/config file of a folder format means its folder."""
    if path.is_file() and path.suffix in (".safetensors", ".json"):
        return path.parent
    return path


def detect_format(path: str | Path) -> tuple[str, Path]:
    """Return `(format name, path to load)` for a folder or file, or raise SAEFormatError saying why not."""
    path = Path(path)
    if not path.exists():
        raise SAEFormatError(f"no SAE at {path}: the path does not exist")
    target = _normalise(path)
    for spec in FORMATS:
        if (target.is_dir() or spec.name == "dictionary_learning") and spec.probe(target):
            return spec.name, target
    found = (
        sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())[:20]
        if target.is_dir()
        else [target.name]
    )
    looked = "; ".join(f"{s.name}: {s.files}" for s in FORMATS)
    raise SAEFormatError(
        f"cannot tell which SAE format {path} is in. Looked for — {looked}. Found: {found or 'an empty folder'}. "
        "Point at the folder holding one SAE (for multi-SAE releases, the sub-folder of the hook point you want)"
    )
