"""Native SAE folder format: `config.json` + `model.safetensors`.

config.json = {"schema_version": 1, "format": "saekit.sae", "config": SAEConfig as dict}
model.safetensors holds every parameter and buffer by its module name in the layout documented on
`SAEConfig` (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `input_scale []`, ...). Both files are
written atomically; loading validates everything and names what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from saekit.atomic import save_tensors_atomic, write_json_atomic
from saekit.errors import SAEConfigError, SAEFormatError
from saekit.sae.config import SAEConfig

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_sae(sae, folder: str | Path) -> Path:
    """Write `sae` to `folder` (created if needed). Weights first, then config, both atomic."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg
    actual = str(sae.dtype).removeprefix("torch.")
    if actual != cfg.dtype:  # the module was cast with .to(dtype): record what is actually saved
        cfg = cfg.replace(dtype=actual)
    tensors = {name: t.detach().cpu() for name, t in sae.state_dict().items()}
    save_tensors_atomic(
        folder / WEIGHTS_FILE,
        tensors,
        metadata={"format": "saekit.sae", "schema_version": str(SCHEMA_VERSION)},
    )
    write_json_atomic(
        folder / CONFIG_FILE,
        {"schema_version": SCHEMA_VERSION, "format": "saekit.sae", "config": cfg.to_dict()},
    )
    return folder


def read_config(folder: str | Path) -> SAEConfig:
    """Parse and validate `folder/config.json`."""
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
            f"no {CONFIG_FILE} in {folder}: not a saekit SAE folder (expected {CONFIG_FILE} + {WEIGHTS_FILE}); "
            "foreign formats (SAELens, sparsify, ...) need converting first"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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
    try:
        return SAEConfig.from_dict(raw["config"])
    except (SAEConfigError, TypeError) as exc:
        raise SAEFormatError(f"{path}: invalid SAE config: {exc}") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.exists():
        raise SAEFormatError(
            f"missing weights file {path}; the SAE folder is incomplete — re-save or re-download it"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        size = path.stat().st_size
        raise SAEFormatError(
            f"cannot read {path} ({size} bytes): {exc}. The file is corrupt or truncated "
            "(an interrupted copy?) — re-save or re-download it"
        ) from None


def load_sae(folder: str | Path, device: str | torch.device | None = None):
    """Load a native SAE folder, checking every tensor's presence, shape and finiteness."""
    from saekit.sae.registry import build

    folder = Path(folder)
    cfg = read_config(folder)
    tensors = _read_tensors(folder / WEIGHTS_FILE)
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
        if tensors[name].is_floating_point() and not torch.isfinite(tensors[name]).all():
            raise SAEFormatError(f"{folder}: tensor {name!r} contains NaN/inf; the weights are corrupt")
    # Materialise the checked meta module without a random init: every tensor is overwritten anyway.
    sae = sae.to_empty(device=device or "cpu")
    with torch.no_grad():
        for name, param in sae.state_dict().items():
            param.copy_(tensors[name].to(param.dtype))
    return sae
