"""Which SAE format is this folder or file? Decided by file names first, then by content.

Folder formats are recognised by their files (and, where names collide — `config.json` +
`model.safetensors` is both native and re-n-y — by their config keys). Single files (`.pt`, `.pth`,
`.bin`, `.safetensors`) by content: saev's JSON header line, or the tensor names of the state dict
(read with `weights_only=True` and mmap, so nothing is unpickled and no tensor data is read). A folder
holding exactly one weights file is treated as that file. When nothing matches, the error lists every
format with what it looks for, and what the path holds (file names, or a file's tensor names).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from saekit.errors import SAEFormatError
from saekit.formats import dictionary_learning, gytdau, openai, reny, saelens, saev, sparsify
from saekit.formats.common import state_keys

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class FormatSpec:
    """One loadable SAE format."""

    name: str
    """Short name used in messages and `load_any(..., format=...)`."""
    files: str
    """What identifies it, as shown to users."""
    probe: Callable[[Path], bool]
    """True when the path (a folder, or a file for single-file formats) is in this format."""
    single_file: bool = False
    """True when the format is one file (probed on files), False for folder formats."""


def _is_native(folder: Path) -> bool:
    cfg = folder / "config.json"  # the weights may be missing: the native loader then names them
    if not cfg.is_file():
        return False
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, absurd nesting
        return True  # let the native loader explain the corrupt file
    return isinstance(raw, dict) and ("schema_version" in raw or raw.get("format") == "saekit.sae")


def _keys_match(match: Callable[[set[str]], bool]) -> Callable[[Path], bool]:
    def probe(path: Path) -> bool:
        if path.suffix == ".safetensors" or saev.has_json_header(path):
            return False
        keys = state_keys(path)
        return keys is not None and match(keys)

    return probe


def _dl_file(path: Path) -> bool:
    if path.suffix != ".pt" or saev.has_json_header(path):
        return False
    if path.name == "ae.pt" or path.name.startswith("ae_"):
        return True  # dictionary_learning's own file names; its loader explains a bad state dict
    keys = state_keys(path)
    return keys is not None and any(
        set(k) - {"k"} <= keys for _, k in dictionary_learning.DICT_CLASSES.values()
    )


FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec("saekit", "config.json (schema_version) + model.safetensors", _is_native),
    FormatSpec("saelens", f"{saelens.CFG_FILE} + {saelens.WEIGHTS_FILE}", saelens.looks_like_saelens),
    FormatSpec(
        "sparsify",
        f"{sparsify.CFG_FILE} + {sparsify.WEIGHTS_FILE} (or sub-folders per hookpoint holding them)",
        lambda p: sparsify.looks_like_sparsify(p) or bool(sparsify.hookpoint_folders(p)),
    ),
    FormatSpec("reny", "config.json (features, pages[, k]) + model.safetensors", reny.looks_like_reny),
    FormatSpec(
        "dictionary_learning",
        f"{dictionary_learning.WEIGHTS_FILE} (+ {dictionary_learning.CONFIG_FILE})",
        lambda p: (p / dictionary_learning.WEIGHTS_FILE).is_file(),
    ),
    FormatSpec(
        "saev",
        f"{saev.WEIGHTS_FILE} (JSON header line + state dict)",
        lambda p: (p / saev.WEIGHTS_FILE).is_file(),
    ),
    FormatSpec("saev", "a file starting with a JSON header line", saev.has_json_header, single_file=True),
    FormatSpec(
        "openai",
        "a .pt state dict with pre_bias, encoder.weight, latent_bias",
        _keys_match(openai.matches_keys),
        True,
    ),
    FormatSpec(
        "gytdau",
        "a .pth state dict with encoder.weight, enc_bias, decoder.weight, dec_bias",
        _keys_match(gytdau.matches_keys),
        True,
    ),
    FormatSpec(
        "dictionary_learning", "a .pt state dict of a dictionary_learning class", _dl_file, single_file=True
    ),
)


def known_formats() -> list[str]:
    return list(dict.fromkeys(f.name for f in FORMATS))


def _folder_of(path: Path) -> Path:
    """A config/weights file of a folder format means its folder (unless it is a single-file format)."""
    if path.is_file() and path.suffix in (".safetensors", ".json"):
        return path.parent
    return path


def _only_weights_file(folder: Path) -> Path | None:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    return files[0] if len(files) == 1 else None


def _probe(target: Path) -> tuple[str, Path] | None:
    for spec in FORMATS:
        if spec.single_file == target.is_file() and spec.probe(target):
            return spec.name, target
    return None


def _found(target: Path) -> str:
    if target.is_dir():
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())[:20]
        return str(names or "an empty folder")
    keys = state_keys(target)
    shown = f"tensors {sorted(keys)[:12]}" if keys is not None else "no readable state dict"
    return f"{target.name} ({target.stat().st_size} bytes) holding {shown}"


def detect_format(path: str | Path) -> tuple[str, Path]:
    """Return `(format name, path to load)` for a folder or file, or raise SAEFormatError saying why not."""
    path = Path(path)
    if not path.exists():
        raise SAEFormatError(f"no SAE at {path}: the path does not exist (not an SAE folder or file)")
    target = _folder_of(path)
    hit = _probe(target)
    if hit is None and path.is_file() and target != path:
        target = path  # a lone .safetensors file: probe its content
        hit = _probe(target)
    if hit is None and target.is_dir() and (only := _only_weights_file(target)) is not None:
        hit = _probe(only)
    if hit is not None:
        return hit
    looked = "; ".join(f"{s.name}: {s.files}" for s in FORMATS)
    raise SAEFormatError(
        f"cannot tell which SAE format {path} is in. Looked for — {looked}. Found: {_found(target)}. "
        "Point at the folder holding one SAE (for multi-SAE releases, the sub-folder of the hook point you "
        "want)"
    )
