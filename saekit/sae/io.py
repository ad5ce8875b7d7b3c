"""Native SAE folder format: `config.json` + `model.safetensors`.

config.json = {"schema_version": 1, "format": "saekit.sae", "config": SAEConfig as dict,
               "files": {"model.safetensors": {"size": bytes, "sha256": hex}}, "pair": token}
model.safetensors holds every parameter and buffer by its module name in the layout documented on
`SAEConfig` (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `input_scale []`, ...) and the same
`pair` token in its metadata.

The two files form one unit: each is written atomically (weights first), and config.json records the
weights' size, sha256 and a per-save token. Opening checks the size and token always (a crash between
the two writes, a truncated copy, or a pair from two saves is refused with the fix) and the sha256
when the file is at most `HASH_ON_OPEN_BYTES` (bytes changed in place); `verify_sae` checks everything.
Folders written before checksums existed load without these checks.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import torch

from saekit.atomic import write_bytes_atomic, write_json_atomic
from saekit.errors import SAEConfigError, SAEFormatError
from saekit.sae.config import SAEConfig
from saekit.sae.integrity import check_loaded, check_pair, weights_record

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Largest d_in, d_sae or k a saved config may declare (native or foreign): a sanity bound, since a
#: corrupt number beyond it would otherwise reach torch's allocator as a size.
MAX_SIZE = 2**31 - 1


def save_sae(sae, folder: str | Path) -> Path:
    """Write `sae` to `folder` (created if needed). Weights first, then config, both atomic."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg
    actual = str(sae.dtype).removeprefix("torch.")
    if actual != cfg.dtype:  # the module was cast with .to(dtype): record what is actually saved
        cfg = cfg.replace(dtype=actual)
    from safetensors.torch import save

    tensors = {name: t.detach().cpu().contiguous() for name, t in sae.state_dict().items()}
    pair = secrets.token_hex(8)
    meta = {"format": "saekit.sae", "schema_version": str(SCHEMA_VERSION), "pair": pair}
    blob = save(tensors, metadata=meta)
    write_bytes_atomic(folder / WEIGHTS_FILE, blob)
    record = weights_record(blob)
    write_json_atomic(
        folder / CONFIG_FILE,
        {
            "schema_version": SCHEMA_VERSION,
            "format": "saekit.sae",
            "config": _config_dict(cfg),
            "files": {WEIGHTS_FILE: record},
            "pair": pair,
        },
    )
    return folder


#: Fields added after schema 1 was released, written only when not at their default, so a folder that
#: does not use them stays readable by earlier saekit versions (which refuse unknown keys).
_NEW_FIELDS = {"skip_connection": False, "transcode": False, "d_out": None}
_NEW_PROVENANCE = ("tower", "source_format", "source_name", "target_hook_point")


def _config_dict(cfg: SAEConfig) -> dict:
    data = cfg.to_dict()
    for name, default in _NEW_FIELDS.items():
        if data.get(name) == default:
            data.pop(name)
    prov = data["provenance"]
    for name in _NEW_PROVENANCE:
        if prov.get(name) is None:
            prov.pop(name, None)
    return data


def read_config(folder: str | Path) -> SAEConfig:
    """Parse and validate `folder/config.json`."""
    raw = _read_raw(folder)
    prov = raw["config"].get("provenance")
    if prov is not None and not isinstance(prov, dict):
        raise SAEFormatError(
            f"{Path(folder) / CONFIG_FILE}: config.provenance must be a JSON object (or absent), found "
            f"{type(prov).__name__}; fix or delete that entry"
        )
    try:
        cfg = SAEConfig.from_dict(raw["config"])
    except (SAEConfigError, TypeError, ValueError) as exc:
        raise SAEFormatError(
            f"{Path(folder) / CONFIG_FILE}: invalid SAE config: {exc}; the file is corrupt or was edited — "
            "fix it or re-save the SAE"
        ) from None
    too_big = {n: v for n in ("d_in", "d_sae", "k") if (v := getattr(cfg, n)) is not None and v > MAX_SIZE}
    if too_big:
        raise SAEFormatError(
            f"{Path(folder) / CONFIG_FILE}: {too_big} exceed(s) {MAX_SIZE}; the config is corrupt — re-save "
            "or re-copy the SAE"
        )
    return cfg


def _read_raw(folder: str | Path) -> dict:
    """config.json as a dict, after checking the keys and schema version."""
    folder = Path(folder)
    if not folder.exists():
        raise SAEFormatError(f"no SAE at {folder}: the folder does not exist")
    if folder.is_file():
        raise SAEFormatError(
            f"{folder} is a file; an SAE is a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    path = folder / CONFIG_FILE
    if not path.exists():
        raise SAEFormatError(
            f"no {CONFIG_FILE} in {folder}: not a saekit SAE folder (expected {CONFIG_FILE} + "
            f"{WEIGHTS_FILE}); "
            "foreign formats (SAELens, sparsify, ...) need converting first"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise SAEFormatError(
            f"{path} is not valid JSON ({exc}); the file is corrupt or truncated — re-save the SAE"
        ) from None
    if not isinstance(raw, dict) or "config" not in raw or "schema_version" not in raw:
        raise SAEFormatError(f"{path} lacks 'schema_version'/'config' keys; not a saekit SAE config")
    version = raw["schema_version"]
    if not isinstance(version, int) or version < 1:
        raise SAEFormatError(f"{path}: schema_version must be a positive integer, found {version!r}")
    if version > SCHEMA_VERSION:
        raise SAEFormatError(
            f"{path} has schema_version {version}, newer than this saekit understands ({SCHEMA_VERSION}); "
            "upgrade saekit (pip install -U saekit) to load it"
        )
    if not isinstance(raw["config"], dict):
        raise SAEFormatError(f"{path}: 'config' must be a JSON object, found {type(raw['config']).__name__}")
    return raw


def read_tensors(path: Path, fix: str = "re-save or re-download it") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file on CPU; any failure of the parser (it reads untrusted bytes) is
    an SAEFormatError naming the file, with `fix` as what to do."""
    from safetensors.torch import load_file

    if not path.exists():
        raise SAEFormatError(f"missing weights file {path}; the SAE folder is incomplete — {fix}")
    if path.is_dir():
        raise SAEFormatError(f"{path} is a folder where a safetensors weights file belongs — {fix}")
    try:
        return load_file(str(path))
    except Exception as exc:  # the parser's own errors vary with the damage; none may escape unnamed
        size = path.stat().st_size
        raise SAEFormatError(
            f"cannot read {path} ({size} bytes): {exc}. The file is corrupt or truncated "
            f"(an interrupted copy?) — {fix}"
        ) from exc


def verify_sae(folder: str | Path) -> dict:
    """Full check of a native SAE folder: config, recorded size + sha256 + pair token, every tensor.

    Returns what was checked; raises SAEFormatError naming the first problem."""
    folder = Path(folder)
    report = check_pair(folder, _read_raw(folder), WEIGHTS_FILE, full=True)
    load_sae(folder, _checked=True)
    return {**report, "tensors_checked": True}


def load_sae(folder: str | Path, device: str | torch.device | None = None, *, _checked: bool = False):
    """Load a native SAE folder, checking the weights against config.json's record (size, pair token,
    sha256 for files up to `integrity.HASH_ON_OPEN_BYTES`), every tensor's presence, shape and dtype, and
    then (`integrity.check_loaded`) finite weights and probe outputs."""
    from saekit.sae.registry import build

    folder = Path(folder)
    cfg = read_config(folder)
    if not _checked:
        check_pair(folder, _read_raw(folder), WEIGHTS_FILE)
    tensors = read_tensors(folder / WEIGHTS_FILE)
    sae = build(cfg, device="meta")
    expected = {name: tuple(t.shape) for name, t in sae.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise SAEFormatError(f"{folder / WEIGHTS_FILE} lacks tensor(s) {missing} needed by arch={cfg.arch!r}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise SAEFormatError(
            f"{folder / WEIGHTS_FILE} has unexpected tensor(s) {extra} for arch={cfg.arch!r}; "
            f"does config.json name the right architecture?"
        )
    for name, shape in expected.items():
        found = tuple(tensors[name].shape)
        if found != shape:
            raise SAEFormatError(
                f"{folder}: tensor {name!r} has shape {found} but config.json (d_in={cfg.d_in}, "
                f"d_sae={cfg.d_sae}) implies {shape}; config and weights disagree"
            )
        if not tensors[name].is_floating_point():  # checked before the cast below would hide it
            raise SAEFormatError(
                f"{folder / WEIGHTS_FILE}: tensor {name!r} has dtype {tensors[name].dtype}; SAE weights are "
                "floating point — the file is corrupt or was edited; re-save or re-copy it"
            )
    # Materialise the checked meta module without a random init: every tensor is overwritten anyway.
    sae = sae.to_empty(device=device or "cpu")
    with torch.no_grad():
        for name, param in sae.state_dict().items():
            param.copy_(tensors[name].to(param.dtype))
    check_loaded(sae, folder / WEIGHTS_FILE)
    return sae
