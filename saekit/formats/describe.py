"""What `saekit info` says about a path: any loadable SAE (native or foreign) or an activation store.

`describe(path, verify=...)` is the library function; the command only prints its dict as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saekit.errors import SaekitError


@dataclass(frozen=True)
class InfoConfig:
    """`saekit info PATH [--verify]`."""

    path: str
    """An SAE (native folder, or any format `saekit.load` reads) or an activation store folder."""
    verify: bool = False
    """Check everything: the SAE weights' full sha256 against config.json (and every tensor), or every
    shard of a store (when the store layer provides `verify_store`)."""


def describe_sae(sae, source_format: str) -> dict[str, Any]:
    """The facts a user needs to use an SAE: format, architecture, sizes, normalisation, provenance."""
    cfg = sae.cfg
    prov = {k: v for k, v in cfg.to_dict()["provenance"].items() if v not in (None, 0)}
    return {
        "kind": "sae",
        "format": source_format,
        "arch": cfg.arch,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "k": cfg.k,
        "dtype": cfg.dtype,
        "normalization": cfg.normalization,
        "input_scale": float(sae.input_scale),
        "signed_latents": bool(getattr(sae, "signed_latents", False)),
        "skip_connection": cfg.skip_connection,
        **(
            {"transcoder": True, "d_out": sae.d_out, "output_scale": float(sae.output_scale)}
            if cfg.transcode
            else {}
        ),
        "provenance": prov,
    }


def _store_info(path: Path, verify: bool) -> dict[str, Any]:
    info = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    info.pop("shards", None)
    out: dict[str, Any] = {"kind": "activation_store", **info}
    if verify:
        try:
            from saekit.data.store import verify_store
        except ImportError:
            out["verify"] = "not available: this saekit's store layer has no verify_store"
        else:
            out["verify"] = verify_store(path)
    return out


def describe(cfg: InfoConfig) -> dict[str, Any]:
    """Describe `cfg.path`; with `cfg.verify` also run the full integrity checks (raising on failure)."""
    from saekit.formats import load_any
    from saekit.formats.detect import detect_format
    from saekit.formats.hub import is_hf_spec, resolve_hf

    path = resolve_hf(cfg.path) if is_hf_spec(cfg.path) else Path(cfg.path)
    if path.is_dir() and (path / "manifest.json").is_file() and not (path / "config.json").exists():
        return _store_info(path, cfg.verify)
    try:
        fmt, target = detect_format(path)
    except SaekitError as exc:
        raise SaekitError(f"{exc}. (Activation stores are folders holding manifest.json.)") from None
    info = describe_sae(load_any(target, format=fmt), fmt)
    if cfg.verify:
        if fmt == "saekit":
            from saekit.sae.io import verify_sae

            info["verify"] = verify_sae(target)
        else:
            info["verify"] = f"{fmt} files carry no checksums; every tensor was checked for shape and NaN/inf"
    return info
